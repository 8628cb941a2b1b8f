"""Datasets in their real on-disk formats, the synthetic scenes, the sample contract and transforms."""
