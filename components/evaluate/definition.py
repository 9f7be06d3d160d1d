"""The evaluate component's KFP function (its inputs: `inputs.INTERFACE`; its work: `runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from tfpipe.components.evaluate.inputs import INTERFACE


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
