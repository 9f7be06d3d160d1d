"""The check_inputs component's inputs, declared once (`INTERFACE`; neither kfp nor TensorFlow: see docs/design.md)."""

from tfpipe.components.common import shared_inputs
from tfpipe.components.continuous_eval.inputs import INTERFACE as CONTINUOUS_EVAL
from tfpipe.components.interface import Interface

INTERFACE = Interface("check_inputs", (
    shared_inputs.TASK,
    shared_inputs.MODEL_DIR,
    shared_inputs.TASK_CONFIG,
    shared_inputs.TASK_PACKAGE,
    CONTINUOUS_EVAL["best_metric"],
    CONTINUOUS_EVAL["best_mode"],
    shared_inputs.THRESHOLDS,
    shared_inputs.PRECISION,
    shared_inputs.JIT_COMPILE,
    *shared_inputs.DATA,
))
