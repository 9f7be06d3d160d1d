"""The continuous_eval component's inputs, declared once (`INTERFACE`; neither kfp nor TensorFlow: see docs/design.md)."""

from tfpipe import checks
from tfpipe.components.common import shared_inputs
from tfpipe.components.interface import Input, Interface

INTERFACE = Interface("continuous_eval", (
    shared_inputs.TASK,
    shared_inputs.MODEL_DIR,
    shared_inputs.TASK_CONFIG,
    shared_inputs.TASK_PACKAGE,
    Input("policy", str, "Which checkpoints to evaluate: all, latest, or a step stride such as 1000.",
          default="all", check=checks.check_policy),
    Input("target_step", int, "Stop once this step is evaluated (0: when training completes).", default=0,
          check=checks.check_optional_step, pipeline=False),
    Input("idle_timeout", float, "Fail after this many seconds without a new checkpoint (0: never).",
          default=3600.0, check=checks.check_optional_seconds),
    Input("start_timeout", float, "Stop without evaluating, leaving the run to a later evaluator, when no new "
          "checkpoint came and no trainer holds model_dir this many seconds after the start (0: wait as "
          "idle_timeout says).", default=0.0, check=checks.check_optional_seconds, pipeline=False),
    Input("poll_interval", float, "Seconds between looks for new checkpoints.", default=1.0,
          check=checks.check_positive_seconds),
    Input("best_metric", str, "The metric that picks the best checkpoint (empty: the task's primary metric).",
          default="", check=checks.check_optional_metric_name),
    Input("best_mode", str, "higher or lower: which values of best_metric are better (empty: the task's).",
          default="", check=checks.check_best_mode),
    Input("eval_name", str, "This evaluator's name: records, summaries and report go to eval/<eval_name>/.",
          default="validation", check=checks.check_eval_name),
    shared_inputs.EVAL_STEPS,
    shared_inputs.DISTRIBUTION_STRATEGY,
    shared_inputs.THRESHOLDS,
    shared_inputs.ALLOW_DIFFERENT_CONFIG,
    shared_inputs.PRECISION,
    shared_inputs.JIT_COMPILE,
    *shared_inputs.DATA,
))
