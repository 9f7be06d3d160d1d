"""The evaluate component: evaluates one checkpoint (`latest`, `best`, `auto`, a step or a path).

    python -m tfpipe.components.evaluate --task=digits --model_dir=gs://bucket/runs/1 --checkpoint=best

The result is recorded in `eval/<eval_name>/records/` like a continuous evaluator's;
a checkpoint evaluated before under the same `eval_name` is not evaluated again (a
retried step returns the recorded result). Its inputs are declared in
`tfpipe.components.evaluate.inputs.INTERFACE`.
"""

import dataclasses
from typing import Any, Dict, Optional

from tfpipe import checks
from tfpipe.components.common import checkpoints
from tfpipe.components import entry_point
from tfpipe.components.common import eval_setup
from tfpipe.components.evaluate.inputs import INTERFACE
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption
from tfpipe.controller_core import run_dir


@dataclasses.dataclass
class EvaluateResult:
    """The evaluated checkpoint and its record."""

    step: int
    checkpoint: str
    record: Dict[str, Any]
    task: Any


def resolve_own_checkpoint(args: Any, best_eval_name: str) -> str:
    """The checkpoint `args.checkpoint` names, which must belong to `args.model_dir`.

    A checkpoint of another run directory is refused: its evaluation would be recorded (and found again) under
    this run's step numbers, and judged with this run's config.
    """
    path = checkpoints.resolve_checkpoint(args.model_dir, args.checkpoint, best_eval_name)
    if not path.startswith(f"{args.model_dir}/"):
        raise checks.InputError(
            f"`checkpoint` ({checks.shown(path)}) is not in `model_dir` ({args.model_dir}): evaluate or export a "
            "checkpoint with the model_dir of the run that wrote it."
        )
    return path


@preemption.exits_on_termination
@INTERFACE.takes_inputs(html_path=None)
def run(args: Any, *, html_path: Optional[str] = None) -> EvaluateResult:
    """Evaluates one checkpoint of `model_dir` (inputs: see `INTERFACE`).

    Args:
        html_path: Also write the HTML report here (a KFP `HTML` artifact path).
        **inputs: As declared in `INTERFACE`.

    Returns:
        The step, the checkpoint and the record.

    Raises:
        checks.InputError: For a bad input, naming it.
    """
    path = resolve_own_checkpoint(args, args.best_eval_name)
    step = run_dir.checkpoint_step(path)
    records = eval_records.EvalRecords(eval_records.eval_dir(args.model_dir, args.eval_name))
    setup = eval_setup.build(
        args=args, eval_name=args.eval_name, title=f"{args.task}: evaluation ({args.eval_name})",
        html_paths=[html_path] if html_path else [],
        extra_actions=[lambda output: checkpoints.record_of(args.model_dir, args.eval_name, path)
                       or records.write(step, path, output)],
    )
    record = checkpoints.record_of(args.model_dir, args.eval_name, path)
    if record is None:
        _refuse_a_step_recorded_for_another_checkpoint(records, step, path, args.eval_name)
        setup.controller.restore_checkpoint(path)
        setup.controller.evaluate(args.eval_steps)
        record = checkpoints.record_of(args.model_dir, args.eval_name, path)
    else:
        print(f" eval | step: {step} | already evaluated as {args.eval_name!r}; using its record", flush=True)
        setup.report()
    return EvaluateResult(step=step, checkpoint=path, record=record, task=setup.task)


def _refuse_a_step_recorded_for_another_checkpoint(records: eval_records.EvalRecords, step: int, path: str,
                                                   eval_name: str) -> None:
    """Raises `checks.InputError` when `step` has a record of another checkpoint: this one could not be recorded.

    Records are never rewritten, so evaluating would record nothing (a checkpoint rewritten after it was
    evaluated, e.g. by a trainer that started over in the same `model_dir`).
    """
    recorded = records.read(step)
    if recorded is None:
        return
    theirs = recorded.get("checkpoint_fingerprint") or "none"
    ours = eval_records.checkpoint_fingerprint(path) or "none"
    raise checks.InputError(
        f"`checkpoint` ({checks.shown(path)}) cannot be evaluated as {eval_name!r}: step {step} already has a record "
        f"of another checkpoint ({recorded.get('checkpoint')}, fingerprint {theirs[:12]}; this one is {ours[:12]}; "
        "it was rewritten after it was evaluated). Records are never rewritten, so nothing was evaluated or "
        "recorded; pass a new `eval_name` to evaluate it."
    )


@entry_point.exit_on_input_error("evaluate")
def run_for_kfp(*, metrics: Any, classification_metrics: Any, report: Any, **inputs: Any) -> tuple:
    """The KFP component's body: `run(**inputs)`, then its outputs (see `tfpipe.components.evaluate.definition`)."""
    result = run(**inputs, html_path=report.path)
    eval_setup.publish(result.record, result.task, metrics=metrics, classification_metrics=classification_metrics)
    return result.step, result.checkpoint


def main(values: Dict[str, Any]) -> None:
    result = run(**values)
    print(eval_setup.summary_line("evaluate | done", result.record), flush=True)

