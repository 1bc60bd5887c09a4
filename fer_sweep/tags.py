"""Tags: labels a user puts on runs (`tags=[baseline,ablation-3]`) to find them again later.

They are recorded in result.json (a list), results.csv (one column, joined by ';') and every tracker, and
`python -m fer_sweep.report SWEEP --filter tags=baseline` keeps the rows that carry a tag. They are not part of the
job (a relabelled run is the same job for resume: fer_sweep.app.config_hash leaves them out).
"""
from __future__ import annotations

from typing import Any, List

from omegaconf import DictConfig, ListConfig

from fer_sweep.errors import ConfigError

SEPARATOR = ";"  # between tags in results.csv's `tags` cell


def from_config(cfg: DictConfig) -> List[str]:
    """cfg.tags as a list of text labels, in the order given, each once; a single value counts as one tag."""
    value: Any = cfg.get("tags")
    if value is None:
        return []
    items = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    tags = [str(item).strip() for item in items]
    bad = next((t for t in tags if not t or SEPARATOR in t), None)
    if bad is not None:
        raise ConfigError(f"tags={list(value) if isinstance(value, ListConfig) else value}: a tag is non-empty "
                          f"text without {SEPARATOR!r}, e.g. tags=[baseline,ablation-3]")
    return list(dict.fromkeys(tags))


def joined(tags: Any) -> Any:
    """result.json's list -> results.csv's cell text (None when there are none)."""
    if isinstance(tags, (list, tuple)):
        return SEPARATOR.join(str(t) for t in tags) or None
    return tags


def has_tag(cell: Any, tag: str) -> bool:
    """Whether a results.csv `tags` cell holds this tag."""
    return isinstance(cell, str) and tag in cell.split(SEPARATOR)
