"""Metric thresholds that gate an export: `{"accuracy": ">= 0.9", "loss": "< 0.3"}`."""

import operator
import re
from typing import Dict, Mapping, Tuple, Union

from tfpipe import checks

Thresholds = Dict[str, Tuple[str, float]]
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_CONDITION = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")


class ThresholdNotMetError(checks.RefusedError):
    """The evaluated metrics of a checkpoint miss a threshold (one line and exit status 1 at the entry point)."""


def parse_thresholds(name: str, value: Union[str, Mapping[str, str], None]) -> Thresholds:
    """Parses `{"metric": ">= 0.9", ...}` (JSON text or a mapping) into `{metric: (op, bound)}`.

    Args:
        name: The input's name, for messages.
        value: The thresholds.

    Raises:
        checks.InputError: Naming the bad entry and the accepted form.
    """
    parsed = {}
    for metric, condition in checks.check_json_object(name, value).items():
        try:
            checks.check_metric_name(name, metric)
        except checks.InputError:
            raise checks.InputError(f"`{name}` has the key {checks.shown(metric)}, which is not a metric name such as "
                             "'accuracy' or 'head/loss'.") from None
        match = _CONDITION.match(condition) if isinstance(condition, str) and len(condition) < 100 else None
        if not match:
            raise checks.InputError(
                f"`{name}[{metric!r}]` must be a comparison such as '>= 0.9' or '< 0.5' "
                f"(operators {sorted(_OPS)}), got {checks.shown(condition)}."
            )
        parsed[metric] = (match.group(1), float(match.group(2)))
    return parsed


def missed_thresholds(metrics: Mapping[str, float], thresholds: Thresholds) -> list:
    """Descriptions of every threshold that `metrics` misses (empty when all pass)."""
    missed = []
    for name, (op, bound) in sorted(thresholds.items()):
        if name not in metrics:
            missed.append(f"{name} is not among the evaluated metrics {sorted(metrics)}")
        elif not _OPS[op](metrics[name], bound):
            value, limit = f"{metrics[name]:.6g}", f"{bound:g}"
            if value == limit:  # Rounded alike: show the digits that differ.
                value, limit = repr(float(metrics[name])), repr(float(bound))
            missed.append(f"metric {name!r} is {value}, which does not meet its threshold {op} {limit}")
    return missed


def check_thresholds(metrics: Mapping[str, float], thresholds: Thresholds, step: int) -> None:
    """Raises `ThresholdNotMetError` naming every threshold that `metrics` (of `step`) misses."""
    missed = missed_thresholds(metrics, thresholds)
    if missed:
        raise ThresholdNotMetError(f"Not exporting step {step}: " + "; ".join(missed) + ".")
