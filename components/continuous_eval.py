"""The continuous_eval component: evaluates every checkpoint of a run while it trains, until it is done.

    python -m tfpipe.components.continuous_eval --task=digits --model_dir=gs://bucket/runs/1 \\
        --best_metric=accuracy --best_mode=higher

Runs beside the train component on the same `model_dir`. It stops once training's
final checkpoint is evaluated (or `target_step` is), and fails when no new checkpoint
came for `idle_timeout` seconds. A restarted run (a KFP retry) skips what is recorded.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Union

from absl import app
from absl import flags

from tfpipe.components import evaluation
from tfpipe import checks
from tfpipe.components import runtime
from tfpipe.controller_core import continuous_eval
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption


@dataclasses.dataclass
class ContinuousEvalResult:
    """What the evaluator did, and the best checkpoint."""

    evaluated: List[int]
    skipped: List[int]
    already_recorded: List[int]
    stop_reason: str
    best: Optional[Dict[str, Any]]
    class_names: Optional[list]

    @property
    def best_step(self) -> int:
        return int(self.best["step"]) if self.best else -1

    @property
    def best_checkpoint(self) -> str:
        return self.best["best_checkpoint"] if self.best else ""


@preemption.exits_on_termination
def run(
    *,
    task: str,
    model_dir: str,
    task_config: Union[str, Mapping[str, Any], None] = None,
    policy: Union[str, int] = "all",
    target_step: Optional[int] = None,
    idle_timeout: Optional[float] = 3600.0,
    poll_interval: float = 1.0,
    best_metric: str = "loss",
    best_mode: str = "lower",
    eval_name: str = "validation",
    eval_steps: int = -1,
    distribution_strategy: str = "default",
    html_path: Optional[str] = None,
) -> ContinuousEvalResult:
    """Evaluates the checkpoints of `model_dir` as they appear, until training is over.

    Args:
        task: A registered task name or `package.module:factory`.
        model_dir: The run directory, shared with the train component.
        task_config: The task's config (JSON object text or mapping).
        policy: `all` (every checkpoint, in step order), `latest`, or a step stride.
        target_step: Stop once a checkpoint at or past this step is evaluated
            (None or 0: stop on training's completion marker).
        idle_timeout: Fail after this many seconds without a new checkpoint
            (None or 0: wait forever).
        poll_interval: Seconds between looks for new checkpoints.
        best_metric: The metric that picks the best checkpoint (nested as `a/b`).
        best_mode: `higher` or `lower`.
        eval_name: This evaluator's name: records, summaries and report go to
            `eval/<eval_name>/`.
        eval_steps: Steps per evaluation; -1 for the whole evaluation dataset.
        distribution_strategy: The distribution strategy.
        html_path: Also keep the HTML report here (a KFP `HTML` artifact path),
            refreshed after every checkpoint.

    Returns:
        What was evaluated and skipped, why it stopped, and the best record.

    Raises:
        ValueError: For a bad input, naming it.
        TimeoutError: When `idle_timeout` passes with no new checkpoint.
    """
    inputs = runtime.TaskInputs.parse(task, task_config)
    model_dir = checks.check_uri("model_dir", model_dir)
    policy = checks.parse_policy(policy)
    target_step = checks.zero_means_unset(target_step)
    if target_step is not None:
        checks.check_positive_int("target_step", target_step)
    idle_timeout = checks.check_seconds("idle_timeout", checks.zero_means_unset(idle_timeout))
    checks.check_seconds("poll_interval", poll_interval, optional=False)
    checks.check_eval_name(eval_name)
    checks.check_eval_steps(eval_steps)
    checks.check_choice("best_mode", best_mode, checks.BEST_MODES)
    checks.check_choice("distribution_strategy", distribution_strategy, checks.STRATEGIES)
    if not isinstance(best_metric, str) or not best_metric:
        raise ValueError(f"`best_metric` must be a metric name, got {best_metric!r}.")

    setup = evaluation.build(
        inputs=inputs, model_dir=model_dir, eval_name=eval_name, strategy=distribution_strategy,
        title=f"{inputs.task}: continuous evaluation ({eval_name})", html_paths=[html_path] if html_path else [],
    )
    evaluation.check_metric_name(setup.evaluator, best_metric, input_name="best_metric")
    evaluator = continuous_eval.ContinuousEvaluator(
        setup.controller, policy=policy, eval_name=eval_name, target_step=target_step, idle_timeout=idle_timeout,
        poll_interval=poll_interval, best_metric=best_metric, best_mode=best_mode,
        eval_identity={**inputs.as_json(), "eval_steps": eval_steps},
    )
    try:
        stats = evaluator.run(steps=eval_steps)
    finally:
        setup.report()  # Whatever happened, the report shows every record there is.
    return ContinuousEvalResult(
        evaluated=stats.evaluated, skipped=stats.skipped, already_recorded=stats.already_recorded,
        stop_reason=stats.stop_reason, best=eval_records.read_best_record(setup.directory),
        class_names=setup.task.class_names,
    )


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the entry point's flags, named as the component's inputs."""
    runtime.define_task_flags(with_strategy=True)
    flags.DEFINE_string("policy", "all", "'all', 'latest', or a step stride such as 1000.")
    flags.DEFINE_integer("target_step", 0, "Stop once this step is evaluated (0: on training's completion).")
    flags.DEFINE_float("idle_timeout", 3600.0, "Fail after this many seconds without a new checkpoint (0: never).")
    flags.DEFINE_float("poll_interval", 1.0, "Seconds between looks for new checkpoints.")
    flags.DEFINE_string("best_metric", "loss", "Metric that picks the best checkpoint.")
    flags.DEFINE_enum("best_mode", "lower", list(checks.BEST_MODES), "Whether higher or lower is better.")
    flags.DEFINE_string("eval_name", "validation", "This evaluator's name: eval/<eval_name>/.")
    flags.DEFINE_integer("eval_steps", -1, "Steps per evaluation; -1 for the whole evaluation dataset.")


def main(argv: list) -> None:
    del argv
    runtime.configure_logging()
    result = run(
        task=FLAGS.task, task_config=FLAGS.task_config, model_dir=FLAGS.model_dir, policy=FLAGS.policy,
        target_step=FLAGS.target_step, idle_timeout=FLAGS.idle_timeout, poll_interval=FLAGS.poll_interval,
        best_metric=FLAGS.best_metric, best_mode=FLAGS.best_mode, eval_name=FLAGS.eval_name,
        eval_steps=FLAGS.eval_steps, distribution_strategy=FLAGS.distribution_strategy,
    )
    print(
        f"continuous_eval | done | {result.stop_reason} | evaluated: {len(result.evaluated)} | "
        f"skipped: {len(result.skipped)} | already recorded: {len(result.already_recorded)}",
        flush=True,
    )
    print(evaluation.summary_line("continuous_eval | best", result.best), flush=True)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["task", "model_dir"])
    app.run(main)
