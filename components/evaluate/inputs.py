"""The evaluate component's inputs, declared once (`INTERFACE`; neither kfp nor TensorFlow: see docs/design.md)."""

from tfpipe import checks
from tfpipe.components.common import shared_inputs
from tfpipe.components.interface import Input, Interface

INTERFACE = Interface("evaluate", (
    shared_inputs.TASK,
    shared_inputs.MODEL_DIR,
    shared_inputs.TASK_CONFIG,
    shared_inputs.TASK_PACKAGE,
    Input("checkpoint", str, "'latest', 'best', 'auto' (best if pinned, else latest), a step, or a checkpoint path.", default="latest",
          check=checks.check_checkpoint_selector, pipeline=False),
    shared_inputs.EVAL_STEPS,
    Input("eval_name", str, "Where the record and summaries go: eval/<eval_name>/.", default="evaluate",
          check=checks.check_eval_name, pipeline=False),
    Input("best_eval_name", str, "The evaluator whose best checkpoint 'best' means.", default="validation",
          check=checks.check_eval_name, pipeline=False),
    shared_inputs.DISTRIBUTION_STRATEGY,
    shared_inputs.ALLOW_DIFFERENT_CONFIG,
    shared_inputs.PRECISION,
    shared_inputs.JIT_COMPILE,
    *shared_inputs.DATA,
    shared_inputs.TEST_DATA,
))
