"""Hydra sweep overrides -> Optuna distributions, with the syntax hydra-optuna-sweeper users know.

    interval(a, b)                 FloatDistribution(a, b)              both ends included
    tag(log, interval(a, b))       FloatDistribution(a, b, log=True)
    int(interval(a, b))            IntDistribution(a, b)                also tag(int, interval(a, b))
    range(a, b, step)              Int/FloatDistribution(a, last, step) b EXCLUDED, like Hydra's range
                                   (step defaults to 1)                 (hydra-optuna-sweeper included it)
    choice(x, y, ...) or x,y,...   CategoricalDistribution([x, y, ...]) also groups: model=choice(cnn,resnet9)
    anything else                  fixed: passed unchanged to every trial

Hydra's own parser reads the overrides, so quoting, escapes and value types are exactly Hydra's.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, Override, RangeSweep
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def create_distributions(overrides: Sequence[str], config_loader: Any = None
                         ) -> Tuple[Dict[str, BaseDistribution], Dict[str, str]]:
    """Split overrides into the search space (name -> distribution) and the fixed ones (name -> override as typed).

    A later override of the same name replaces an earlier one, so command-line arguments placed after
    `hydra.sweeper.params` win. The config loader is only needed for `glob(...)` over config groups.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    distributions: Dict[str, BaseDistribution] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(list(overrides)):
        name = override.get_key_element()
        distributions.pop(name, None)
        fixed.pop(name, None)
        if override.is_sweep_override():
            distributions[name] = to_distribution(override)
        else:
            fixed[name] = override.input_line
    return distributions, fixed


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep override -> its Optuna distribution; a ValueError names the override it could not use."""
    value = override.value()
    try:
        if isinstance(value, IntervalSweep):
            return _interval(value)
        if isinstance(value, RangeSweep):
            return _range(value)
        if isinstance(value, (ChoiceSweep, Glob)):
            return _categorical(list(override.sweep_iterator()))
    except ValueError as exc:
        raise ValueError(f"{override.input_line}: {exc}") from exc
    raise ValueError(f"{override.input_line}: not a search space Optuna understands")


def _interval(sweep: IntervalSweep) -> BaseDistribution:
    """Hydra makes interval bounds floats unless cast with int(...); the `int` tag is the other way to ask."""
    log = "log" in sweep.tags
    if "int" in sweep.tags or (isinstance(sweep.start, int) and isinstance(sweep.end, int)):
        return IntDistribution(int(sweep.start), int(sweep.end), log=log)
    return FloatDistribution(float(sweep.start), float(sweep.end), log=log)


def _range(sweep: RangeSweep) -> BaseDistribution:
    """range(a, b, step): a, a+step, ... while short of b (b excluded, negative steps allowed), as a stepped
    distribution. Counted in decimal: Hydra's own float range gives range(0.1, 0.4, 0.1) a 0.4 by rounding."""
    start, stop, step = (Decimal(str(v)) for v in (sweep.start, sweep.stop, sweep.step))
    count = math.ceil((stop - start) / step) if step else 0
    if count <= 0:
        raise ValueError("the range is empty")
    last = start + (count - 1) * step
    low, high = min(start, last), max(start, last)
    log = "log" in sweep.tags  # Optuna allows log only with step 1 (int) and no step (float): it says so
    if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        return IntDistribution(int(low), int(high), step=int(abs(step)), log=log)
    return FloatDistribution(float(low), float(high), step=float(abs(step)), log=log)


def _categorical(values: List[Any]) -> CategoricalDistribution:
    bad = [v for v in values if not isinstance(v, CATEGORICAL_TYPES)]
    if bad:
        raise ValueError(f"choices must be plain values (str, int, float, bool, null), not {bad[0]!r}")
    return CategoricalDistribution(values)


def grid_values(distributions: Dict[str, BaseDistribution]) -> Dict[str, List[Any]]:
    """Every value of each distribution, for the grid sampler; continuous intervals have no grid."""
    grid: Dict[str, List[Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif getattr(dist, "step", None) is not None and not dist.log:
            grid[name] = _steps(dist)
        else:
            raise ValueError(f"the grid sampler needs choice(...) or range(...) for {name}, not {dist}")
    return grid


def _steps(dist: Any) -> List[Any]:
    count = int(round((dist.high - dist.low) / dist.step)) + 1
    if isinstance(dist, IntDistribution):
        return [dist.low + i * dist.step for i in range(count)]
    return [float(Decimal(str(dist.low)) + i * Decimal(str(dist.step))) for i in range(count)]


def format_override(name: str, value: Any) -> str:
    """`name=value` that Hydra parses back to exactly `value` (quoting strings only where needed)."""
    return f"{name}={format_value(value)}"


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _parses_back(text, text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parses_back(text: str, expected: Any) -> bool:
    try:
        parsed = OverridesParser.create().parse_override(f"x={text}")
    except Exception:  # noqa: BLE001 - Hydra's grammar errors have several types
        return False
    return not parsed.is_sweep_override() and type(parsed.value()) is type(expected) and parsed.value() == expected


def describe(distributions: Dict[str, BaseDistribution], fixed: Optional[Dict[str, str]] = None) -> str:
    """One line per parameter, for the sweep log."""
    lines = [f"  {name}: {dist}" for name, dist in distributions.items()]
    lines += [f"  {line} (fixed)" for line in (fixed or {}).values()]
    return "\n".join(lines)
