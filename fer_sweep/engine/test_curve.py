"""The test-accuracy curve, for benchmarks only: `trainer.test_every_epoch=true` scores the test split after
every epoch, so a benchmark can say when a recipe first reached an accuracy (`python -m fer_sweep.bench
--time-to 0.659`). Model selection never sees it: the checkpoint is still chosen on validation alone."""
from __future__ import annotations

import logging
import time
from typing import Dict

import torch.nn as nn

from fer_sweep.data.batches import Batches
from fer_sweep.engine.callbacks import Callback
from fer_sweep.engine.loop import evaluate
from fer_sweep.engine.precision import Precision

log = logging.getLogger(__name__)


class TestEveryEpoch(Callback):
    """Adds test_acc and elapsed_s (wall time since `start`, minus the time spent here scoring the test split)
    to each epoch's metrics, hence to history.csv."""

    def __init__(self, model: nn.Module, test: Batches, precision: Precision, tta: str, start: float):
        self.model, self.test, self.precision, self.tta = model, test, precision, tta
        self.start, self.scoring_s = start, 0.0

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> bool:
        tic = time.perf_counter()
        metrics["elapsed_s"] = tic - self.start - self.scoring_s
        metrics["test_acc"] = evaluate(self.model, self.test, self.precision, tta=self.tta).acc
        took = time.perf_counter() - tic
        self.scoring_s += took
        log.info("epoch %d  test acc %.4f  at %.0f s (scoring took %.1f s, not counted)", epoch, metrics["test_acc"],
                 metrics["elapsed_s"], took)
        return False
