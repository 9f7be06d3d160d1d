"""What the components that read a trained run share: the task built and checked against the run, an evaluator.

`load_task` is the start of evaluate, continuous_eval and export: it installs the
task package, builds the task (under the step's `precision`), compares its
effective config with the run's, and checks every metric name the step was given
against the task's metrics, all before any evaluation. `build` adds an evaluating
`Controller` whose summaries and report go to `eval/<eval_name>/`.
"""

import dataclasses
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe import checks
from tfpipe.components.common import artifacts
from tfpipe.components.common import checkpoints
from tfpipe.components.common import data_identity
from tfpipe.components.common import precision as precision_lib
from tfpipe.components.common import probe
from tfpipe.components.common import run_config
from tfpipe.components.common import strategy as strategy_lib
from tfpipe.components.common import summaries
from tfpipe.components import tasks
from tfpipe.components.common.data import DataInputs
from tfpipe.components.tasks import Task
from tfpipe.components.tasks.keras_runners import KerasEvaluator
from tfpipe.controller_core import eval_records


@dataclasses.dataclass
class EvalSetup:
    """A built task and a `Controller` that evaluates it in `model_dir`."""

    task: Task
    controller: orbit.Controller
    evaluator: orbit.AbstractEvaluator
    directory: str
    report: artifacts.ReportAction


def load_task(args: Any, *, distribution: tf.distribute.Strategy, metrics: Iterable[str] = (),
              for_training: bool = False, runners: Sequence[str] = (), data_optional: bool = False,
              probe_splits: Sequence[str] = ("eval",)) -> Task:
    """Builds the step's task and checks it against the run, before any evaluation.

    Args:
        args: The step's checked inputs: `task`, `task_config`, `task_package`, `model_dir`, and
            `allow_different_config`, `precision` and `jit_compile` when the step has them.
        distribution: The strategy to build the task in.
        metrics: Metric names the step was given (a best metric, threshold names), checked against the task's.
        for_training: Compare the run config as training does (every key, precision too), not as an evaluator.
        runners: `trainer` and/or `evaluator`: the generic runners the step's `precision` and `jit_compile` are
            for (refused for a task that brings its own).
        data_optional: Compare only the data inputs the step was given with the run's (export: it evaluates
            nothing); otherwise a data input the run was trained with must be given again, with the same content.
        probe_splits: The datasets of which one batch goes through the model, loss, metrics and serving
            signature before anything else (`tfpipe.components.common.probe`; on one device only).

    Raises:
        checks.InputError: For a task config (or, training, a precision) that differs from training's, a metric
            the task does not report, a precision/jit_compile its own runner would ignore, or a batch its model,
            loss, metrics or serving signature refuse.
    """
    precision = getattr(args, "precision", precision_lib.FLOAT32)
    package = tasks.install_task_package(args.task_package)
    data = DataInputs.from_inputs(args)
    data_fingerprints = data_identity.identify(data)
    with distribution.scope(), precision_lib.policy_scope(precision):
        task = tasks.build_task(args.task, args.task_config, data)
    for runner in runners:
        precision_lib.check_generic_runner(task, precision=precision, jit_compile=getattr(args, "jit_compile", False),
                                           runner=runner)
    run_config.check_run_config(
        args.model_dir, run_config.with_data(run_config.run_config(args.task, task, args.task_config, precision, package),
                                             data_fingerprints),
        for_training=for_training, eval_only_keys=task.eval_only_config_keys,
        allow_different=getattr(args, "allow_different_config", False), skip_absent_data=data_optional)
    check_metric_names(task, metrics)
    probe.maybe_probe(task, distribution, splits=probe_splits)
    return task


def check_metric_names(task: Task, names: Iterable[str]) -> None:
    """Checks that the task reports every metric in `names` (skipped when only an evaluation can tell).

    Raises:
        checks.InputError: Naming the metric and the task's metrics.
    """
    known = task.eval_metric_names()
    if known is None:
        return
    for name in names:
        if name not in known:
            raise checks.InputError(
                f"metric {name!r} is not a metric of task {task.name!r}; its metrics are {known}. Nothing was "
                "evaluated."
            )


def eval_summary_manager(model_dir: str, eval_name: str,
                         global_step: tf.Variable) -> orbit.utils.SummaryManagerInterface:
    """The summary manager of evaluator `eval_name`: scalars into `<model_dir>/eval/<eval_name>/` (and into
    `$AIP_TENSORBOARD_LOG_DIR/eval/<eval_name>/` where Vertex set it)."""
    return summaries.summary_manager(eval_records.eval_dir(model_dir, eval_name), f"eval/{eval_name}",
                                     _scalar_summary, global_step)


def _scalar_summary(name: str, value: Any, step: Any) -> None:
    """Scalars to TensorBoard; other values (a confusion matrix) are skipped."""
    if np.ndim(value) == 0:
        tf.summary.scalar(name, value, step=step)


def build(
    *,
    args: Any,
    eval_name: str,
    title: str,
    metrics: Iterable[str] = (),
    html_paths: Sequence[str] = (),
    extra_actions: Sequence[orbit.Action] = (),
    thresholds: Optional[Mapping[str, Any]] = None,
) -> EvalSetup:
    """Builds the task (`load_task`), its evaluator and a controller whose summaries go to `eval/<eval_name>/`.

    The controller's eval actions end with the report action, which rewrites
    `eval/<eval_name>/report.html` (and each of `html_paths`) after every evaluation; with `thresholds` (parsed)
    its header says whether the best checkpoint passes them.
    """
    distribution = strategy_lib.create_strategy(args.distribution_strategy)
    task = load_task(args, distribution=distribution, metrics=metrics, runners=["evaluator"])
    evaluator = task.evaluator or KerasEvaluator(task, distribution, jit_compile=args.jit_compile)
    directory = eval_records.eval_dir(args.model_dir, eval_name)
    report = artifacts.ReportAction(directory, title=title, class_names=task.class_names, extra_paths=html_paths,
                                    thresholds=thresholds)
    manager = tf.train.CheckpointManager(checkpoints.task_checkpoint(task), args.model_dir, max_to_keep=None)
    controller = orbit.Controller(
        global_step=task.global_step,
        evaluator=evaluator,
        strategy=distribution,
        checkpoint_manager=manager,
        eval_summary_manager=eval_summary_manager(args.model_dir, eval_name, task.global_step),
        eval_actions=[*extra_actions, report],
    )
    return EvalSetup(task=task, controller=controller, evaluator=evaluator, directory=directory, report=report)


def summary_line(kind: str, record: Optional[Mapping[str, Any]]) -> str:
    """One closing log line naming the step and the scalar metrics of `record`."""
    if record is None:
        return f"{kind} | no checkpoint evaluated"
    scalars, _ = artifacts.split_metrics(record["metrics"])
    shown = ", ".join(f"{k}: {v:.4g}" for k, v in sorted(scalars.items()))
    return f"{kind} | step: {record['step']} | {shown} | checkpoint: {record['checkpoint']}"


def publish(record: Optional[Mapping[str, Any]], task: Task, *, metrics: Any, classification_metrics: Any) -> None:
    """Fills a step's Metrics and (for classifiers) ClassificationMetrics artifacts from `record`."""
    if record is None:
        return
    artifacts.log_to_kfp(record, metrics=metrics,
                         classification_metrics=classification_metrics if task.is_classifier else None,
                         class_names=task.class_names)
    if not task.is_classifier:
        classification_metrics.metadata["note"] = f"task {task.name!r} is not a classifier: no confusion matrix"

