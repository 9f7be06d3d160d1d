"""The four KFP components, as lightweight Python components running in the project image.

Each function body imports the package (it runs inside the image, or under
`kfp.local.SubprocessRunner` in an environment that has tfpipe installed) and calls
the same `run(...)` as `python -m components.<name>`. The image is a compile-time
setting: `components_for_image(image)` returns the four components for any image
reference; the module-level `train_op`, `evaluate_op`, `continuous_eval_op` and
`export_op` use `DEFAULT_IMAGE`: `$TFPIPE_IMAGE`, else `LOCAL_IMAGE`, the tag `make image` builds.

Outputs (stable names):

* train: `model` (Model; metadata `model_dir`, `final_step`, `checkpoint`), `metrics`
  (Metrics: the last train loop's scalars and `step`), and parameters `final_step`, `checkpoint`.
* evaluate: `metrics`, `classification_metrics` (10x10 for `digits`), `report` (HTML),
  and parameters `step`, `checkpoint`.
* continuous_eval: the same three artifacts for the best checkpoint, and parameters
  `best_step`, `best_checkpoint`, `evaluated`, `skipped`, `passed` (whether the best
  checkpoint's metrics pass `thresholds`).
* export: `model` (Model: the SavedModel; metadata `step`, `checkpoint`, `metrics`,
  `signatures`, `export_path`), and parameters `step`, `export_path`.
"""

import os
import types
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Model, Output

from tfpipe import __version__, checks

# The tag `make image` builds (see the Dockerfile): clearly local, so that nothing compiled for a cluster names it
# unnoticed; the packaged specs name it, and compiling for GKE or Vertex needs an explicit image.
LOCAL_IMAGE = f"localhost/tfpipe:{__version__}"
DEFAULT_IMAGE = os.environ.get("TFPIPE_IMAGE", LOCAL_IMAGE)


def train(
    task: str,
    model_dir: str,
    train_steps: int,
    model: Output[Model],
    metrics: Output[Metrics],
    task_config: str = "{}",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    distribution_strategy: str = "default",
    deterministic: bool = True,
    max_divergence_recoveries: int = 3,
    loss_upper_bound: float = 0.0,
) -> NamedTuple("TrainOutputs", [("final_step", int), ("checkpoint", str)]):
    """Trains `task` in `model_dir` up to `train_steps`, resuming from its latest checkpoint.

    Args:
        task: Registered task name (e.g. `digits`) or `package.module:factory`.
        model_dir: Run directory shared by all steps: gs://bucket/path, /gcs/bucket/path or local.
        train_steps: Global step to train up to.
        model: Output: points at `model_dir` (metadata: model_dir, final_step, checkpoint).
        metrics: Output: the last train loop's metrics.
        task_config: The task's config as a JSON object.
        steps_per_loop: Steps per inner loop.
        checkpoint_interval: Save a checkpoint every this many steps.
        max_to_keep: Checkpoints to keep.
        distribution_strategy: `default`, `mirrored`, `tpu` or `multi_worker_mirrored`.
        deterministic: Op determinism, so a resumed run matches an uninterrupted one.
        max_divergence_recoveries: Rollbacks on a NaN/inf/too large loss before failing.
        loss_upper_bound: A larger finite loss counts as divergence (0: only NaN and inf).
    """
    import json
    import math
    import os
    from collections import namedtuple

    from tfpipe.components import train as train_lib

    result = train_lib.run(
        task=task, task_config=task_config, model_dir=model_dir, train_steps=train_steps,
        steps_per_loop=steps_per_loop, checkpoint_interval=checkpoint_interval, max_to_keep=max_to_keep,
        distribution_strategy=distribution_strategy, deterministic=deterministic, max_divergence_recoveries=max_divergence_recoveries,
        loss_upper_bound=loss_upper_bound,
    )
    outputs = namedtuple("TrainOutputs", ["final_step", "checkpoint"])(result.final_step, result.checkpoint or "")
    if not result.is_chief:  # Several replicas (a Vertex worker pool): only the chief publishes artifacts.
        return outputs
    pointer = {"model_dir": result.model_dir, "final_step": result.final_step, "checkpoint": result.checkpoint or ""}
    model.metadata.update({**pointer, "framework": "tensorflow"})
    os.makedirs(model.path, exist_ok=True)
    with open(os.path.join(model.path, "run.json"), "w") as f:
        json.dump(pointer, f)
    for name, value in sorted(result.metrics.items()):
        if math.isfinite(value):
            metrics.log_metric(name, value)
    metrics.log_metric("step", float(result.final_step))
    return outputs


def evaluate(
    task: str,
    model_dir: str,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    task_config: str = "{}",
    checkpoint: str = "latest",
    eval_steps: int = -1,
    eval_name: str = "evaluate",
    best_eval_name: str = "validation",
    distribution_strategy: str = "default",
) -> NamedTuple("EvaluateOutputs", [("step", int), ("checkpoint", str)]):
    """Evaluates one checkpoint of `model_dir`: `latest`, `best`, a step or a path.

    Args:
        task: Registered task name or `package.module:factory`.
        model_dir: The run directory.
        metrics: Output: every finite scalar metric, and `step`.
        classification_metrics: Output: the confusion matrix (classification tasks).
        report: Output: the HTML report.
        task_config: The task's config as a JSON object.
        checkpoint: `latest`, `best`, a step, or a checkpoint path.
        eval_steps: Evaluation steps; -1 for the whole evaluation dataset.
        eval_name: Where the record and summaries go: eval/<eval_name>/.
        best_eval_name: The evaluator whose best checkpoint `best` means.
        distribution_strategy: The distribution strategy.
    """
    from collections import namedtuple

    from tfpipe.components import artifacts
    from tfpipe.components import evaluate as evaluate_lib

    result = evaluate_lib.run(
        task=task, task_config=task_config, model_dir=model_dir, checkpoint=checkpoint, eval_steps=eval_steps,
        eval_name=eval_name, best_eval_name=best_eval_name, distribution_strategy=distribution_strategy, html_path=report.path,
    )
    artifacts.log_to_kfp(result.record, metrics=metrics, classification_metrics=classification_metrics,
                         class_names=result.class_names)
    return namedtuple("EvaluateOutputs", ["step", "checkpoint"])(result.step, result.checkpoint)


def continuous_eval(
    task: str,
    model_dir: str,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    task_config: str = "{}",
    policy: str = "all",
    target_step: int = 0,
    idle_timeout: int = 3600,
    poll_interval: float = 1.0,
    best_metric: str = "loss",
    best_mode: str = "lower",
    eval_name: str = "validation",
    eval_steps: int = -1,
    distribution_strategy: str = "default",
    thresholds: str = "{}",
) -> NamedTuple(
    "ContinuousEvalOutputs",
    [("best_step", int), ("best_checkpoint", str), ("evaluated", int), ("skipped", int), ("passed", bool)],
):
    """Evaluates every checkpoint of `model_dir` while it trains, until training is complete.

    Args:
        task: Registered task name or `package.module:factory`.
        model_dir: The run directory shared with the train step.
        metrics: Output: the best checkpoint's finite scalar metrics, and its `step`.
        classification_metrics: Output: the best checkpoint's confusion matrix.
        report: Output: the HTML report of every evaluated checkpoint, refreshed after each.
        task_config: The task's config as a JSON object.
        policy: `all`, `latest`, or a step stride.
        target_step: Stop once this step is evaluated (0: when training completes).
        idle_timeout: Fail after this many seconds without a new checkpoint (0: never).
        poll_interval: Seconds between looks for new checkpoints.
        best_metric: The metric that picks the best checkpoint.
        best_mode: `higher` or `lower`.
        eval_name: This evaluator's name: eval/<eval_name>/.
        eval_steps: Steps per evaluation; -1 for the whole evaluation dataset.
        distribution_strategy: The distribution strategy.
        thresholds: JSON object such as {"accuracy": ">= 0.9"}; `passed` says whether the best checkpoint meets it.
    """
    from collections import namedtuple

    from tfpipe.components import artifacts
    from tfpipe.components import continuous_eval as continuous_eval_lib
    from tfpipe.components import thresholds as thresholds_lib

    limits = thresholds_lib.parse_thresholds(thresholds)
    result = continuous_eval_lib.run(
        task=task, task_config=task_config, model_dir=model_dir, policy=policy, target_step=target_step,
        idle_timeout=idle_timeout, poll_interval=poll_interval, best_metric=best_metric, best_mode=best_mode,
        eval_name=eval_name, eval_steps=eval_steps, distribution_strategy=distribution_strategy, html_path=report.path,
    )
    passed = False
    if result.best is not None:
        artifacts.log_to_kfp(result.best, metrics=metrics, classification_metrics=classification_metrics,
                             class_names=result.class_names)
        passed = not thresholds_lib.missed_thresholds(artifacts.kfp_metrics(result.best), limits)
    outputs = namedtuple("ContinuousEvalOutputs", ["best_step", "best_checkpoint", "evaluated", "skipped", "passed"])
    return outputs(result.best_step, result.best_checkpoint, len(result.evaluated), len(result.skipped), passed)


def export(
    task: str,
    model_dir: str,
    model: Output[Model],
    task_config: str = "{}",
    checkpoint: str = "auto",
    eval_name: str = "validation",
    thresholds: str = "{}",
    export_dir: str = "",
) -> NamedTuple("ExportOutputs", [("step", int), ("export_path", str)]):
    """Exports a checkpoint of `model_dir` as a SavedModel with the task's serving signature.

    Args:
        task: Registered task name or `package.module:factory`.
        model_dir: The run directory.
        model: Output: the SavedModel (metadata: step, checkpoint, metrics, signatures, export_path).
        task_config: The task's config as a JSON object.
        checkpoint: `auto` (best if pinned, else latest), `best`, `latest`, a step, or a path.
        eval_name: The evaluator whose records and best checkpoint to use.
        thresholds: JSON object such as {"accuracy": ">= 0.9"}: fail unless the checkpoint's metrics pass.
        export_dir: Also export to <export_dir>/<step>/ (e.g. gs://bucket/serving/model).
    """
    from collections import namedtuple

    from tfpipe.components import export as export_lib

    result = export_lib.run(
        task=task, task_config=task_config, model_dir=model_dir, output_path=model.path, checkpoint=checkpoint,
        eval_name=eval_name, thresholds=thresholds, export_dir=export_dir or None,
    )
    model.metadata.update({
        "framework": "tensorflow", "step": result.step, "checkpoint": result.checkpoint,
        "metrics": result.metrics, "signatures": result.signatures, "export_path": result.export_path or "",
    })
    return namedtuple("ExportOutputs", ["step", "export_path"])(result.step, result.export_path or "")


COMPONENT_FUNCTIONS = (train, evaluate, continuous_eval, export)


def components_for_image(image: str) -> types.SimpleNamespace:
    """The four components built for the container image `image`.

    Args:
        image: A container image reference holding tfpipe (see the Dockerfile).

    Returns:
        A namespace with `train`, `evaluate`, `continuous_eval` and `export`.
    """
    checks.check_image(image)
    return types.SimpleNamespace(**{
        fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in COMPONENT_FUNCTIONS
    })


_default = components_for_image(DEFAULT_IMAGE)
train_op = _default.train
evaluate_op = _default.evaluate
continuous_eval_op = _default.continuous_eval
export_op = _default.export
