from fer_sweep.sweep.grid import GridSweeper as _GridSweeper


class GridSweeper(_GridSweeper):
    """`hydra/sweeper=grid` (fer_sweep's default): Hydra's grid sweep that survives failed jobs."""
