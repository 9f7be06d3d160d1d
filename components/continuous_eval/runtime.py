"""The continuous_eval component: evaluates every checkpoint of a run while it trains, until it is done.

    python -m tfpipe.components.continuous_eval --task=digits --model_dir=gs://bucket/runs/1

Runs beside the train component on the same `model_dir`. It stops once training's
final checkpoint is evaluated (or `target_step` is), and fails when no new checkpoint
came for `idle_timeout` seconds. With `start_timeout`, it stops without failing when
training has not started by then (no new checkpoint, no trainer holding `model_dir`),
for a later evaluator to continue (`tfpipe.pipelines.dag.train_and_evaluate`). A restarted run (a KFP retry) skips what is recorded.
The best checkpoint is picked by the task's primary metric unless `best_metric` and
`best_mode` say otherwise. Its inputs are declared in
`tfpipe.components.continuous_eval.inputs.INTERFACE`.
"""

import dataclasses
from typing import Any, Dict, List, Optional

from tfpipe.components.common import artifacts
from tfpipe.components.common import attempts
from tfpipe.components.common import checkpoints
from tfpipe.components.common import data_identity
from tfpipe.components import entry_point
from tfpipe.components.common import eval_setup
from tfpipe.components.common import lease
from tfpipe.components.common import run_config
from tfpipe.components.common import thresholds as thresholds_lib
from tfpipe.components.continuous_eval.inputs import INTERFACE
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
    best_metric: str
    passed: bool
    task: Any

    @property
    def best_step(self) -> int:
        return int(self.best["step"]) if self.best else -1

    @property
    def best_checkpoint(self) -> str:
        return self.best["best_checkpoint"] if self.best else ""


@preemption.exits_on_termination
@INTERFACE.takes_inputs(html_path=None)
@attempts.guarded("continuous_eval")
def run(args: Any, *, html_path: Optional[str] = None) -> ContinuousEvalResult:
    """Evaluates the checkpoints of `model_dir` as they appear, until training is over (inputs: see `INTERFACE`).

    Args:
        html_path: Also keep the HTML report here (a KFP `HTML` artifact path), refreshed after every checkpoint.
        **inputs: As declared in `INTERFACE`.

    Returns:
        What was evaluated and skipped, why it stopped, the best record, and whether it passes `thresholds`.

    Raises:
        checks.InputError: For a bad input, naming it (a metric name the task lacks included).
        TimeoutError: When `idle_timeout` passes with no new checkpoint.
    """
    setup = eval_setup.build(
        args=args, eval_name=args.eval_name, html_paths=[html_path] if html_path else [],
        title=f"{args.task}: continuous evaluation ({args.eval_name})",
        metrics=[m for m in [args.best_metric, *args.thresholds] if m], thresholds=args.thresholds,
    )
    metric = args.best_metric or setup.task.best_metric
    mode = args.best_mode or setup.task.best_mode
    identity = {"task": args.task, "task_config": run_config.run_config(
        args.task, setup.task, args.task_config)["task_config"], "eval_steps": args.eval_steps}
    if args.eval_data is not None:  # What is evaluated on: its content, not its URI.
        identity["eval_data"] = data_identity.fingerprint(args.eval_data)["digest"]
    evaluator = continuous_eval.ContinuousEvaluator(
        setup.controller, policy=args.policy, eval_name=args.eval_name, target_step=args.target_step,
        idle_timeout=args.idle_timeout, poll_interval=args.poll_interval, best_metric=metric, best_mode=mode,
        eval_identity=identity,
    )
    start = _maybe_start_timeout(args.model_dir, args.start_timeout)
    try:
        stats = evaluator.run(steps=args.eval_steps, **start)
    finally:
        setup.report()  # Whatever happened, the report shows every record there is.
    best = eval_records.read_best_record(setup.directory)
    missed = thresholds_lib.missed_thresholds(artifacts.kfp_metrics(best), args.thresholds) if best else ["no best"]
    if best is not None and missed:
        print(f"continuous_eval | gate | best step {best['step']} misses the thresholds: {'; '.join(missed)}",
              flush=True)
    return ContinuousEvalResult(
        evaluated=stats.evaluated, skipped=stats.skipped, already_recorded=stats.already_recorded,
        stop_reason=stats.stop_reason, best=best, best_metric=metric, passed=best is not None and not missed,
        task=setup.task,
    )


def _maybe_start_timeout(model_dir: str, start_timeout: Optional[float]) -> Dict[str, Any]:
    """`ContinuousEvaluator.run` options for `start_timeout`: stop when, `start_timeout` seconds without a new
    checkpoint, no checkpoint came since the start and no trainer holds `model_dir` (none: wait)."""
    if not start_timeout:
        return {}
    at_start = checkpoints.latest_complete_checkpoint(model_dir)

    def training_not_started() -> bool:
        if checkpoints.latest_complete_checkpoint(model_dir) != at_start or lease.holder(model_dir) is not None:
            return False
        print(f"continuous_eval | no new checkpoint and no trainer in {model_dir} after {start_timeout:g} s "
              "(start_timeout): stopping; a later evaluator on this model_dir continues", flush=True)
        return True

    return {"timeout": start_timeout, "timeout_fn": training_not_started}


@entry_point.exit_on_input_error("continuous_eval")
def run_for_kfp(*, metrics: Any, classification_metrics: Any, report: Any, **inputs: Any) -> tuple:
    """The KFP component's body: `run(**inputs)`, then its outputs (see `tfpipe.components.continuous_eval.definition`)."""
    result = run(**inputs, html_path=report.path)
    eval_setup.publish(result.best, result.task, metrics=metrics, classification_metrics=classification_metrics)
    return (result.best_step, result.best_checkpoint, len(result.evaluated), len(result.skipped), result.passed)


def main(values: Dict[str, Any]) -> None:
    result = run(**values)
    print(
        f"continuous_eval | done | {result.stop_reason} | evaluated: {len(result.evaluated)} | "
        f"skipped: {len(result.skipped)} | already recorded: {len(result.already_recorded)}",
        flush=True,
    )
    print(eval_setup.summary_line(f"continuous_eval | best by {result.best_metric}", result.best), flush=True)

