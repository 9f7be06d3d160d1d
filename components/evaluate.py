"""The evaluate component: evaluates one checkpoint (`latest`, `best`, a step or a path).

    python -m tfpipe.components.evaluate --task=digits --model_dir=gs://bucket/runs/1 --checkpoint=best

The result is recorded in `eval/<eval_name>/records/` like a continuous evaluator's;
a step evaluated before under the same `eval_name` is not evaluated again (a retried
step returns the recorded result).
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Union

from absl import app
from absl import flags

from tfpipe.components import evaluation
from tfpipe import checks
from tfpipe.components import runtime
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption
from tfpipe.controller_core import run_dir


@dataclasses.dataclass
class EvaluateResult:
    """The evaluated checkpoint and its record."""

    step: int
    checkpoint: str
    record: Dict[str, Any]
    class_names: Optional[list]


@preemption.exits_on_termination
def run(
    *,
    task: str,
    model_dir: str,
    task_config: Union[str, Mapping[str, Any], None] = None,
    checkpoint: Union[str, int] = "latest",
    eval_steps: int = -1,
    eval_name: str = "evaluate",
    best_eval_name: str = "validation",
    distribution_strategy: str = "default",
    html_path: Optional[str] = None,
) -> EvaluateResult:
    """Evaluates one checkpoint of `model_dir`.

    Args:
        task: A registered task name or `package.module:factory`.
        model_dir: The run directory.
        task_config: The task's config (JSON object text or mapping).
        checkpoint: `latest`, `best` (the checkpoint pinned by evaluator
            `best_eval_name`), a step, or a checkpoint path.
        eval_steps: Steps to evaluate; -1 for the whole evaluation dataset.
        eval_name: Where this evaluation's record, summaries and report go
            (`eval/<eval_name>/`).
        best_eval_name: The evaluator whose best checkpoint `best` means.
        distribution_strategy: The distribution strategy.
        html_path: Also write the HTML report here (a KFP `HTML` artifact path).

    Returns:
        The step, the checkpoint and the record.

    Raises:
        ValueError: For a bad input, naming it.
    """
    inputs = runtime.TaskInputs.parse(task, task_config)
    model_dir = checks.check_uri("model_dir", model_dir)
    checks.check_eval_steps(eval_steps)
    checks.check_eval_name(eval_name)
    checks.check_eval_name(best_eval_name)
    checks.check_choice("distribution_strategy", distribution_strategy, checks.STRATEGIES)
    path = runtime.resolve_checkpoint(model_dir, checkpoint, best_eval_name)
    step = run_dir.checkpoint_step(path)
    if step is None:
        raise ValueError(f"`checkpoint` ({checkpoint!r}) resolved to {path}, which has no step number (<name>-<step>).")

    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, eval_name))
    setup = evaluation.build(
        inputs=inputs, model_dir=model_dir, eval_name=eval_name, strategy=distribution_strategy,
        title=f"{inputs.task}: evaluation ({eval_name})", html_paths=[html_path] if html_path else [],
        extra_actions=[lambda output: records.read(step) or records.write(step, path, output)],
    )
    record = records.read(step)
    if record is None:
        setup.controller.restore_checkpoint(path)
        setup.controller.evaluate(eval_steps)
        record = records.read(step)
    else:
        print(f" eval | step: {step} | already evaluated as {eval_name!r}; using its record", flush=True)
        setup.report()
    return EvaluateResult(step=step, checkpoint=path, record=record, class_names=setup.task.class_names)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the entry point's flags, named as the component's inputs."""
    runtime.define_task_flags(with_strategy=True)
    flags.DEFINE_string("checkpoint", "latest", "'latest', 'best', a step, or a checkpoint path.")
    flags.DEFINE_integer("eval_steps", -1, "Evaluation steps; -1 for the whole evaluation dataset.")
    flags.DEFINE_string("eval_name", "evaluate", "Name of this evaluation's records: eval/<eval_name>/.")
    flags.DEFINE_string("best_eval_name", "validation", "The evaluator whose best checkpoint 'best' means.")


def main(argv: list) -> None:
    del argv
    runtime.configure_logging()
    result = run(
        task=FLAGS.task, task_config=FLAGS.task_config, model_dir=FLAGS.model_dir, checkpoint=FLAGS.checkpoint,
        eval_steps=FLAGS.eval_steps, eval_name=FLAGS.eval_name, best_eval_name=FLAGS.best_eval_name,
        distribution_strategy=FLAGS.distribution_strategy,
    )
    print(evaluation.summary_line("evaluate | done", result.record), flush=True)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["task", "model_dir"])
    app.run(main)
