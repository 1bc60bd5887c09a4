"""Sweeps: aggregation of job results, Hydra callbacks, and the sweepers behind the Hydra plugins."""
