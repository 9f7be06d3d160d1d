"""TensorBoard summaries for (nested) output dictionaries."""

import os
from typing import Any, Callable, Dict, Optional

import tensorflow as tf

from tfpipe.controller_core.utils.summary_manager_interface import SummaryManagerInterface


class SummaryManager(SummaryManagerInterface):
    """Writes output dictionaries as TensorBoard summaries under one directory.

    Each leaf `name: value` is written with `summary_fn(name, value, step=...)`.
    A nested dictionary `{"a": {"b": x}}` writes `b` into the sub-directory `a/`,
    which TensorBoard shows as a separate run. With `summary_dir=None` every
    writer is a no-op, so callers never need to check.

    Subclasses may rely on Orbit's names: the attributes `_enabled`,
    `_summary_dir`, `_summary_fn`, `_summary_writers` (writers by relative path)
    and `_global_step`, and the hook `_write_summaries(summary_dict,
    relative_path="")`, which `write_summaries` calls when enabled and which
    writes the leaves (override it to route some values to other summary
    functions, e.g. images). A subclass may set the attributes itself instead of
    calling `__init__`, as Model Garden's `ImageScalarSummaryManager` does.
    """

    def __init__(
        self,
        summary_dir: Optional[str],
        summary_fn: Callable[..., Any],
        global_step: Optional[tf.Variable] = None,
    ) -> None:
        """Initializes the manager.

        Args:
            summary_dir: The directory for event files (any `tf.io.gfile` URI), or
                `None` to write nothing.
            summary_fn: Called as `summary_fn(name, value, step=step)` per leaf,
                e.g. `tf.summary.scalar`.
            global_step: The step to write at; `None` takes
                `tf.summary.experimental.get_step()` now (as Orbit does).
        """
        self._enabled = summary_dir is not None
        self._summary_dir = summary_dir
        self._summary_fn = summary_fn
        self._summary_writers: Dict[str, tf.summary.SummaryWriter] = {}
        self._global_step = global_step if global_step is not None else tf.summary.experimental.get_step()

    def summary_writer(self, relative_path: str = "") -> tf.summary.SummaryWriter:
        """Returns the (cached) writer for `summary_dir/relative_path`."""
        if relative_path not in self._summary_writers:
            if self._enabled:
                writer = tf.summary.create_file_writer(os.path.join(self._summary_dir, relative_path))
            else:
                writer = tf.summary.create_noop_writer()
            self._summary_writers[relative_path] = writer
        return self._summary_writers[relative_path]

    def flush(self) -> None:
        """Flushes every writer opened so far."""
        if not self._enabled:
            return
        for writer in self._summary_writers.values():
            writer.flush()

    def write_summaries(self, summary_dict: Dict[str, Any]) -> None:
        """Writes `summary_dict`, nested dictionaries into sub-directories (nothing when disabled)."""
        if not self._enabled:
            return
        self._write_summaries(summary_dict)

    def _write_summaries(self, summary_dict: Dict[str, Any], relative_path: str = "") -> None:
        """Writes the leaves of `summary_dict` under `relative_path`, recursing into nested dictionaries."""
        for name, value in summary_dict.items():
            if isinstance(value, dict):
                self._write_summaries(value, relative_path=os.path.join(relative_path, name))
            else:
                with self.summary_writer(relative_path).as_default():
                    self._summary_fn(name, value, step=self._global_step)
