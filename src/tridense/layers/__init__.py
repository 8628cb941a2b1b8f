"""Reusable network blocks shared by the models (affinity propagation, up-projection, ...)."""
