"""Paper analyses: cross-task affinity-pair statistics, affinity maps, the iteration trade-off."""
