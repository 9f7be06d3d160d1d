"""The continuous_eval component: its inputs and its KFP definition (the work is `tfpipe.components.continuous_eval.runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

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


def continuous_eval(
    task: str,
    model_dir: str,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    task_config: str = "{}",
    task_package: str = "",
    policy: str = "all",
    target_step: int = 0,
    idle_timeout: float = 3600.0,
    start_timeout: float = 0.0,
    poll_interval: float = 1.0,
    best_metric: str = "",
    best_mode: str = "",
    eval_name: str = "validation",
    eval_steps: int = -1,
    distribution_strategy: str = "default",
    thresholds: str = "{}",
    allow_different_config: bool = False,
    precision: str = "float32",
    jit_compile: bool = False,
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
) -> NamedTuple(
    "ContinuousEvalOutputs",
    [("best_step", int), ("best_checkpoint", str), ("evaluated", int), ("skipped", int), ("passed", bool)],
):
    """Evaluates every checkpoint of `model_dir` while it trains, until training is complete.

    Also outputs the parameters `best_step`, `best_checkpoint`, `evaluated`, `skipped` (checkpoints deleted
    before they could be evaluated) and `passed` (whether the best checkpoint meets `thresholds`). (`Args:` are
    added from `INTERFACE`.)
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components.continuous_eval import runtime as continuous_eval_lib

    return continuous_eval_lib.run_for_kfp(**inputs)


INTERFACE.document(continuous_eval, outputs={
    "metrics": "The best checkpoint's finite scalar metrics, and its step.",
    "classification_metrics": "The best checkpoint's confusion matrix (and ROC curve); classifiers only.",
    "report": "The HTML report of every evaluated checkpoint, refreshed after each.",
})
