"""What the evaluate and continuous_eval components share: an evaluator controller for a run directory."""

import dataclasses
from typing import Any, List, Mapping, Optional, Sequence

import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.components import artifacts
from tfpipe.components import runtime
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


def build(
    *,
    inputs: runtime.TaskInputs,
    model_dir: str,
    eval_name: str,
    strategy: str,
    title: str,
    html_paths: Sequence[str] = (),
    extra_actions: Sequence[orbit.Action] = (),
) -> EvalSetup:
    """Builds the task, its evaluator and a controller whose summaries go to `eval/<eval_name>/`.

    The controller's eval actions end with the report action, which rewrites
    `eval/<eval_name>/report.html` (and each of `html_paths`) after every evaluation.
    """
    distribution = runtime.create_strategy(strategy)
    task = inputs.build(distribution)
    evaluator = task.evaluator or KerasEvaluator(task, distribution)
    directory = eval_records.eval_dir(model_dir, eval_name)
    report = artifacts.ReportAction(directory, title=title, class_names=task.class_names, extra_paths=html_paths)
    manager = tf.train.CheckpointManager(runtime.task_checkpoint(task), model_dir, max_to_keep=None)
    controller = orbit.Controller(
        global_step=task.global_step,
        evaluator=evaluator,
        strategy=distribution,
        checkpoint_manager=manager,
        eval_summary_manager=runtime.eval_summary_manager(model_dir, eval_name, task.global_step),
        eval_actions=[*extra_actions, report],
    )
    return EvalSetup(task=task, controller=controller, evaluator=evaluator, directory=directory, report=report)


def check_metric_name(evaluator: orbit.AbstractEvaluator, name: str, *, input_name: str) -> None:
    """Checks that a generic Keras evaluator reports `name` (other evaluators are checked on first use)."""
    names: Optional[List[str]] = getattr(evaluator, "output_names", None)
    if names is not None and name not in names:
        raise ValueError(f"`{input_name}` ({name!r}) is not a metric of this task; its metrics are {names}.")


def summary_line(kind: str, record: Optional[Mapping[str, Any]]) -> str:
    """One closing log line naming the step and the scalar metrics of `record`."""
    if record is None:
        return f"{kind} | no checkpoint evaluated"
    scalars, _ = artifacts.split_metrics(record["metrics"])
    shown = ", ".join(f"{k}: {v:.4g}" for k, v in sorted(scalars.items()))
    return f"{kind} | step: {record['step']} | {shown} | checkpoint: {record['checkpoint']}"
