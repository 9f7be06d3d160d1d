"""The continuous_eval component's KFP function (its inputs: `inputs.INTERFACE`; its work: `runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from tfpipe.components.continuous_eval.inputs import INTERFACE


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
