"""What the evaluation report accepts: its inputs checked, records flattened to rows, the best step found.

Every check fails fast with a `ValueError` that names the input (`records[3]['step']`,
`train_curves['loss'][0]`, `confusion_matrix[1][2]`), echoes the value and says what is accepted.
Standard library only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Row:
    """One evaluated checkpoint, checked and with its metrics flattened."""

    step: int
    checkpoint: str
    metrics: dict[str, int | float]
    other: tuple[str, ...]  # Metrics that are not one number (e.g. a per-class list): not shown.
    time: float | None
    duration: float | None


def check_records(records: Any) -> list[Row]:
    """Checks the records and returns them sorted by step."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValueError(f"`records` must be a sequence of record mappings, got {type(records).__name__}.")
    rows = sorted((_check_record(i, record) for i, record in enumerate(records)), key=lambda row: row.step)
    for previous, row in itertools.pairwise(rows):
        if previous.step == row.step:
            raise ValueError(
                f"`records` hold step {row.step} twice (checkpoints {previous.checkpoint!r} and "
                f"{row.checkpoint!r}); each evaluated checkpoint must appear once."
            )
    return rows


def check_curves(curves: Any) -> dict[str, list[tuple[int, float]]]:
    """Checks `train_curves`; returns each curve sorted by step, the last value of a repeated step kept."""
    if curves is None:
        return {}
    if not isinstance(curves, Mapping):
        raise ValueError(f"`train_curves` must be a mapping of metric name to (step, value) pairs, got {curves!r}.")
    checked = {}
    for name, points in curves.items():
        if not isinstance(name, str) or isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
            raise ValueError(f"`train_curves[{name!r}]` must be a sequence of (step, value) pairs, got {points!r}.")
        by_step = {}
        for i, point in enumerate(points):
            if not (isinstance(point, Sequence) and len(point) == 2 and _is_integer(point[0]) and _is_number(point[1])):
                raise ValueError(f"`train_curves[{name!r}][{i}]` must be a (step, number) pair, got {point!r}.")
            by_step[int(point[0])] = float(point[1])
        checked[name] = sorted(by_step.items())
    return checked


def check_matrix(matrix: Any) -> list[list[int]]:
    """Checks a square matrix of non-negative integer counts (lists, or an array with `tolist()`)."""
    if hasattr(matrix, "tolist"):  # A NumPy array, without importing NumPy.
        matrix = matrix.tolist()
    if isinstance(matrix, (str, bytes)) or not isinstance(matrix, Sequence) or not matrix:
        raise ValueError(f"`confusion_matrix` must be a non-empty square list of count rows, got {matrix!r}.")
    size = len(matrix)
    for i, row in enumerate(matrix):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != size:
            raise ValueError(f"`confusion_matrix[{i}]` must be a row of {size} counts, got {row!r}.")
        for j, value in enumerate(row):
            if not _is_integer(value) or value < 0:
                raise ValueError(f"`confusion_matrix[{i}][{j}]` must be a non-negative integer, got {value!r}.")
    return [[int(value) for value in row] for row in matrix]


def check_class_names(class_names: Any, size: int) -> list[str]:
    """Checks the class names against the matrix size; numbers the classes when there are none."""
    if class_names is None:
        return [str(i) for i in range(size)]
    if hasattr(class_names, "tolist"):
        class_names = class_names.tolist()
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ValueError(f"`class_names` must be a sequence of strings, got {class_names!r}.")
    names = [str(name) for name in class_names]
    if len(names) != size:
        raise ValueError(f"`class_names` has {len(names)} names ({names!r}) but `confusion_matrix` is {size}x{size}.")
    return names


def metric_names(rows: Sequence[Row]) -> list[str]:
    """Every metric name, in the order the records (by step) first name them."""
    return list(dict.fromkeys(name for row in rows for name in row.metrics))


def resolve_best(rows: Sequence[Row], names: Sequence[str], best_step: Any, best_metric: Any,
                 higher_is_better: Any) -> int | None:
    """Returns the best step: the given one (checked), the best finite `best_metric` value, or None."""
    if not isinstance(higher_is_better, bool):
        raise ValueError(f"`higher_is_better` must be a bool, got {higher_is_better!r}.")
    if best_metric is not None and (not isinstance(best_metric, str) or best_metric not in names):
        raise ValueError(f"`best_metric` must be one of the recorded metrics {names}, got {best_metric!r}.")
    if best_step is not None:
        steps = [row.step for row in rows]
        if not _is_integer(best_step) or best_step not in steps:
            raise ValueError(f"`best_step` must be one of the recorded steps {steps}, got {best_step!r}.")
        return int(best_step)
    if best_metric is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    candidates = [(-sign * row.metrics[best_metric], row.step) for row in rows
                  if math.isfinite(row.metrics.get(best_metric, math.nan))]
    return min(candidates)[1] if candidates else None


def _check_record(index: int, record: Any) -> Row:
    """Checks one record and flattens its metrics."""
    where = f"records[{index}]"
    if not isinstance(record, Mapping):
        raise ValueError(f"`{where}` must be a mapping, got {record!r}.")
    for key in ("step", "checkpoint", "metrics"):
        if key not in record:
            raise ValueError(f"`{where}` has no {key!r} (keys: {sorted(map(str, record))}).")
    step, checkpoint, metrics = record["step"], record["checkpoint"], record["metrics"]
    if not _is_integer(step):
        raise ValueError(f"`{where}['step']` must be an integer, got {step!r}.")
    if not isinstance(checkpoint, str):
        raise ValueError(f"`{where}['checkpoint']` must be a string, got {checkpoint!r}.")
    if not isinstance(metrics, Mapping):
        raise ValueError(f"`{where}['metrics']` must be a mapping of metric name to number, got {metrics!r}.")
    flat = list(_flatten_metrics(metrics, f"{where}['metrics']"))
    return Row(
        step=int(step),
        checkpoint=checkpoint,
        metrics={name: _as_number(value) for name, value in flat if _is_number(value)},
        other=tuple(name for name, value in flat if not _is_number(value)),
        time=_optional_finite(record.get("time"), f"{where}['time']"),
        duration=_optional_finite(record.get("duration"), f"{where}['duration']"),
    )


def _flatten_metrics(metrics: Mapping[Any, Any], where: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yields (name, value) pairs; nested mappings become `outer/inner` names, each name once."""
    seen: set[str] = set()
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        pairs = _flatten_metrics(value, where, f"{name}/") if isinstance(value, Mapping) else [(name, value)]
        for flat_name, flat_value in pairs:
            if flat_name in seen:
                raise ValueError(f"`{where}` names metric {flat_name!r} twice once nested names are flattened.")
            seen.add(flat_name)
            yield flat_name, flat_value


def _optional_finite(value: Any, where: str) -> float | None:
    """Checks an optional finite number (a time or a duration)."""
    if value is not None and not (_is_number(value) and math.isfinite(value)):
        raise ValueError(f"`{where}` must be a finite number, got {value!r}.")
    return None if value is None else float(value)


def _is_integer(value: Any) -> bool:
    """Whether a value is an integer (bools are not integers here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Whether a value is one real number (NaN and ±inf included; bools are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_number(value: Any) -> int | float:
    """An integer as a Python int, any other real number as a float."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)
