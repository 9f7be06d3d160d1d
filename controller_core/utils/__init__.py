"""Utilities for runners and the controller: summaries, loops, steps, datasets."""

from tfpipe.controller_core.utils.common import create_global_step
from tfpipe.controller_core.utils.common import get_value
from tfpipe.controller_core.utils.common import make_distributed_dataset
from tfpipe.controller_core.utils.epoch_helper import EpochHelper
from tfpipe.controller_core.utils.loop_fns import LoopFnWithSummaries
from tfpipe.controller_core.utils.loop_fns import create_loop_fn
from tfpipe.controller_core.utils.loop_fns import create_tf_while_loop_fn
from tfpipe.controller_core.utils.loop_fns import create_tf_while_loop_fn_with_state
from tfpipe.controller_core.utils.summary_manager import SummaryManager
from tfpipe.controller_core.utils.summary_manager_interface import SummaryManagerInterface
from tfpipe.controller_core.utils.tpu_summaries import OptionalSummariesFunction

__all__ = [
    "EpochHelper",
    "LoopFnWithSummaries",
    "OptionalSummariesFunction",
    "SummaryManager",
    "SummaryManagerInterface",
    "create_global_step",
    "create_loop_fn",
    "create_tf_while_loop_fn",
    "create_tf_while_loop_fn_with_state",
    "get_value",
    "make_distributed_dataset",
]
