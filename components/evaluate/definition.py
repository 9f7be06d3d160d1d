"""The evaluate component: its inputs and its KFP definition (the work is `tfpipe.components.evaluate.runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

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


def evaluate(
    task: str,
    model_dir: str,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    task_config: str = "{}",
    task_package: str = "",
    checkpoint: str = "latest",
    eval_steps: int = -1,
    eval_name: str = "evaluate",
    best_eval_name: str = "validation",
    distribution_strategy: str = "default",
    allow_different_config: bool = False,
    precision: str = "float32",
    jit_compile: bool = False,
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
    test_data: dsl.Input[dsl.Dataset] = None,
) -> NamedTuple("EvaluateOutputs", [("step", int), ("checkpoint", str)]):
    """Evaluates one checkpoint of `model_dir`: `latest`, `best`, a step or a path.

    Also outputs the parameters `step` and `checkpoint`. (`Args:` are added from `INTERFACE`.)
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components.evaluate import runtime as evaluate_lib

    return evaluate_lib.run_for_kfp(**inputs)


INTERFACE.document(evaluate, outputs={
    "metrics": "Every finite scalar metric of the checkpoint, and step.",
    "classification_metrics": "The confusion matrix (and ROC curve for binary classifiers); classifiers only.",
    "report": "The HTML report of the evaluation.",
})
