"""The interface the controller writes summaries through; inject your own to redirect them."""

import abc
from typing import Any, Dict


class SummaryManagerInterface(abc.ABC):
    """Writes (nested) output dictionaries somewhere: TensorBoard, a metrics store, ..."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Flushes everything written so far."""

    @abc.abstractmethod
    def summary_writer(self, relative_path: str = "") -> Any:
        """Returns the writer (a `tf.summary.SummaryWriter`-like) for a sub-directory."""

    @abc.abstractmethod
    def write_summaries(self, summary_dict: Dict[str, Any]) -> None:
        """Writes a possibly nested dictionary of values."""
