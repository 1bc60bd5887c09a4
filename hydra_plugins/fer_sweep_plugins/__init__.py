"""Thin Hydra plugin classes: Hydra instantiates sweepers only from the hydra_plugins namespace package.
The logic lives in fer_sweep.sweep."""
