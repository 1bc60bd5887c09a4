"""Parameter count and FLOPs per 48x48 image of every registered model (or the ones named).

    python -m fer_sweep.models [cnn resnet9 ...]

FLOPs are counted by torch.utils.flop_counter on one forward pass in eval mode (a multiply-add counts as 2);
they cover convolutions and linear layers, which is where nearly all of the work is.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from fer_sweep.models import MODELS, build_model, count_parameters


def flops_per_image(model: torch.nn.Module) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 48, 48))
    return int(counter.get_total_flops())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_sweep.models", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"models to list (default: all of {', '.join(MODELS.names())})")
    args = parser.parse_args(argv)
    try:
        models = {name: build_model(name) for name in args.names or MODELS.names()}
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"{'model':<14} {'parameters':>12} {'MFLOPs/image':>13}")
    for name, model in models.items():
        print(f"{name:<14} {count_parameters(model):>12,} {flops_per_image(model) / 1e6:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
