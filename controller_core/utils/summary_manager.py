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
            global_step: The step to write at; `None` uses
                `tf.summary.experimental.get_step()`.
        """
        self._summary_dir = summary_dir
        self._summary_fn = summary_fn
        self._global_step = global_step
        self._writers: Dict[str, tf.summary.SummaryWriter] = {}

    def summary_writer(self, relative_path: str = "") -> tf.summary.SummaryWriter:
        """Returns the (cached) writer for `summary_dir/relative_path`."""
        if relative_path not in self._writers:
            if self._summary_dir is None:
                self._writers[relative_path] = tf.summary.create_noop_writer()
            else:
                self._writers[relative_path] = tf.summary.create_file_writer(
                    os.path.join(self._summary_dir, relative_path)
                )
        return self._writers[relative_path]

    def flush(self) -> None:
        """Flushes every writer opened so far."""
        if self._summary_dir is None:
            return
        for writer in self._writers.values():
            writer.flush()

    def write_summaries(self, summary_dict: Dict[str, Any]) -> None:
        """Writes `summary_dict`, nested dictionaries into sub-directories (nothing without a directory)."""
        if self._summary_dir is None:
            return
        self._write(summary_dict, relative_path="")

    def _write(self, summary_dict: Dict[str, Any], relative_path: str) -> None:
        step = self._global_step if self._global_step is not None else tf.summary.experimental.get_step()
        for name, value in summary_dict.items():
            if isinstance(value, dict):
                self._write(value, os.path.join(relative_path, name))
            else:
                with self.summary_writer(relative_path).as_default():
                    self._summary_fn(name, value, step=step)
