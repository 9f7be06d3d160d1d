"""Tracking the best value of a metric, persisted across restarts."""

import math
import operator
import sys
from typing import Any, Callable, Optional, Union

import tensorflow as tf

from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner
from tfpipe.controller_core.utils import common

MetricFn = Callable[[runner.Output], Union[float, tf.Tensor]]


def lookup_metric(output: runner.Output, name: str) -> Any:
    """Returns `output[name]`; a name with `/` or `|` walks nested dictionaries.

    An exact key wins over a nested path, so `"eval/loss"` finds a flat key of
    that name before `output["eval"]["loss"]`.

    Raises:
        KeyError: If the metric is not in `output`; the message lists what is.
    """
    if name in output:
        return output[name]
    node: Any = output
    for part in name.replace("|", "/").split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"metric {name!r} is not in the output; available: {_flat_keys(output)}")
        node = node[part]
    return node


def _flat_keys(output: Any, prefix: str = "") -> list:
    keys = []
    for key, value in output.items():
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, f"{prefix}{key}/"))
        else:
            keys.append(f"{prefix}{key}")
    return sorted(keys)


class JSONPersistedValue:
    """A value kept in a JSON file, so it survives process restarts.

    The file is read once, at construction: a missing or empty file (or one
    holding `null`) means `initial_value`, which is then written (unless it is
    None). Each `write` replaces the file atomically.
    """

    def __init__(self, initial_value: Any, filename: Optional[str], write_value: bool = True) -> None:
        """Initializes the value.

        Args:
            initial_value: The value when `filename` holds none yet; JSON-serialisable.
            filename: The JSON file (any `tf.io.gfile` URI), or None to keep the
                value in memory only.
            write_value: Whether `write` (and construction, for a new file)
                writes the file; False keeps it read-only, e.g. on non-chief workers.
        """
        self._filename = filename
        self._write_value = write_value
        self._value = None
        if filename is not None and tf.io.gfile.exists(filename) and tf.io.gfile.stat(filename).length > 0:
            self._value = run_dir.read_json(filename)
        if self._value is None and initial_value is not None:
            self.write(initial_value)

    def read(self) -> Any:
        """Returns the current value."""
        return self._value

    def write(self, value: Any) -> None:
        """Sets the value and (when writing is enabled) persists it."""
        self._value = value
        if self._filename is not None and self._write_value:
            run_dir.write_json_atomic(self._filename, value)


class NewBestMetric:
    """Tells whether an output holds a new best value of a metric, and records it.

    Comparison is strict (a tie is not a new best) and a NaN value never wins.
    Use `test` to ask without changing state and `commit` to record, e.g.::

        best = NewBestMetric("accuracy", filename=f"{model_dir}/best_accuracy.json")
        ConditionalAction(condition=best.test, action=[export, best.commit])
    """

    def __init__(
        self,
        metric: Union[str, MetricFn],
        higher_is_better: bool = True,
        filename: Optional[str] = None,
        write_metric: bool = True,
    ) -> None:
        """Initializes the tracker.

        Args:
            metric: The output key (nested keys as `"a/b"`), or a function of the
                output returning the value.
            higher_is_better: Whether larger values are better.
            filename: A JSON file to persist the best value in; None keeps it in
                memory only.
            write_metric: Whether to write the file (False: read-only).
        """
        self.metric = metric
        self.higher_is_better = higher_is_better
        self._better = operator.gt if higher_is_better else operator.lt
        # Orbit's starting point, so that any finite value beats it; unlike Orbit's, it is not written to the file.
        self._initial = -sys.float_info.max if higher_is_better else sys.float_info.max
        self._best_value = JSONPersistedValue(None, filename, write_value=write_metric)

    def metric_value(self, output: runner.Output) -> float:
        """Returns the metric's value in `output` as a Python float."""
        value = self.metric(output) if callable(self.metric) else lookup_metric(output, self.metric)
        return float(common.get_value(value))

    @property
    def best_value(self) -> float:
        """The best value recorded so far; before any, Orbit's `-sys.float_info.max` (`+` when lower is better)."""
        value = self._best_value.read()
        return self._initial if value is None else value

    def test(self, output: runner.Output) -> bool:
        """Returns whether `output` holds a new best value, without recording it."""
        value = self.metric_value(output)
        if math.isnan(value):
            return False
        return self._better(value, self.best_value)

    def commit(self, output: runner.Output) -> bool:
        """Records `output`'s value when it is a new best; returns whether it was."""
        if not self.test(output):
            return False
        self._best_value.write(self.metric_value(output))
        return True

    def __call__(self, output: runner.Output) -> bool:
        """Same as `commit`."""
        return self.commit(output)
