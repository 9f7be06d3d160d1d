"""Summary managers of the components: the run directory's, and a copy where Vertex uploads TensorBoard logs."""

from typing import Any, Callable, Dict, Optional

import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.components.common import vertex_env


class TeeSummaryManager(orbit.utils.SummaryManagerInterface):
    """Writes every summary through a primary manager and copies it through others.

    In-step summaries (a trainer's own `tf.summary` calls) go to the primary's
    writer only: `summary_writer` has one writer to give.
    """

    def __init__(self, primary: orbit.utils.SummaryManagerInterface,
                 *copies: orbit.utils.SummaryManagerInterface) -> None:
        self._primary = primary
        self._all = (primary, *copies)

    def summary_writer(self, relative_path: str = "") -> Any:
        return self._primary.summary_writer(relative_path)

    def flush(self) -> None:
        for manager in self._all:
            manager.flush()

    def write_summaries(self, summary_dict: Dict[str, Any]) -> None:
        for manager in self._all:
            manager.write_summaries(summary_dict)


def summary_manager(
    summary_dir: Optional[str], relative: str, summary_fn: Callable[..., Any], global_step: tf.Variable,
) -> orbit.utils.SummaryManagerInterface:
    """The manager for `<summary_dir>`, teed into `$AIP_TENSORBOARD_LOG_DIR/<relative>` where Vertex set it.

    Args:
        summary_dir: The run directory's summary directory (`<model_dir>/train`, ...), or None for none (a
            non-chief worker: then nothing is written anywhere).
        relative: Its path relative to the run directory (`train`, `eval/<eval_name>`).
        summary_fn: Writes one value (`tf.summary.scalar`, ...).
        global_step: The step to write at.
    """
    primary = orbit.utils.SummaryManager(summary_dir, summary_fn, global_step)
    vertex_dir = vertex_env.tensorboard_dir(relative) if summary_dir is not None else None
    if vertex_dir is None:
        return primary
    print(f"vertex | summaries also go to {vertex_dir} (Vertex TensorBoard)", flush=True)
    return TeeSummaryManager(primary, orbit.utils.SummaryManager(vertex_dir, summary_fn, global_step))
