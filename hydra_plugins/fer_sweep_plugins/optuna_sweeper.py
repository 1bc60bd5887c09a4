"""Thin Hydra plugin class: Hydra instantiates sweepers only from the hydra_plugins namespace package.
The logic lives in fer_sweep.sweep.optuna_sweeper; the config in conf/hydra/sweeper/optuna.yaml."""
from fer_sweep.sweep.optuna_sweeper import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    """`hydra/sweeper=optuna`: an Optuna (>= 5, ask/tell) search with pruning, durable storage and resume."""
