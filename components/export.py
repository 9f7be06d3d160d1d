"""The export component: a SavedModel of the chosen checkpoint, committed only when complete.

    python -m tfpipe.components.export --task=digits --model_dir=gs://bucket/runs/1 \\
        --output_path=/tmp/model --export_dir=gs://bucket/serving/digits --thresholds='{"accuracy": ">= 0.9"}'

The SavedModel is written to a temporary sibling, then committed file by file with
`saved_model.pb` last (SavedModel loaders and TF Serving look for it), so a reader
never loads a partial export, on local disk, a /gcs/ mount or gs://. The export is
reloaded and must predict what the checkpointed model predicts on a sample batch.
Under `export_dir` each export lands in `<export_dir>/<step>/` (a TF Serving version);
an existing complete version is never overwritten.
"""

import dataclasses
import json
import uuid
from typing import Any, Dict, List, Mapping, Optional, Union

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tfpipe.components import artifacts
from tfpipe import checks
from tfpipe.components import runtime
from tfpipe.components import thresholds as thresholds_lib
from tfpipe.components.thresholds import ThresholdNotMetError
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption
from tfpipe.controller_core import restore
from tfpipe.controller_core import run_dir

SAVED_MODEL_PB = "saved_model.pb"
# Beside saved_model.pb: the step, checkpoint and metrics of the export, so that a later run can
# compare itself with this model when it is imported as a baseline (by URI, metadata does not travel).
EXPORT_INFO = "tfpipe_export.json"


@dataclasses.dataclass
class ExportResult:
    """Where the SavedModel went, of which checkpoint, with which metrics."""

    step: int
    checkpoint: str
    path: str
    export_path: Optional[str]
    metrics: Dict[str, float]
    signatures: List[str]


def commit_saved_model(source: str, destination: str) -> None:
    """Copies a complete SavedModel directory to `destination`, `saved_model.pb` last.

    A destination that already holds `saved_model.pb` is complete and is left
    as it is; one without it is the leftover of an interrupted commit and is
    completed.
    """
    if tf.io.gfile.exists(f"{destination}/{SAVED_MODEL_PB}"):
        return
    files = []
    for root, _, names in tf.io.gfile.walk(source):
        files += [f"{root.rstrip('/')}/{name}" for name in names]
    files.sort(key=lambda f: f.endswith(f"/{SAVED_MODEL_PB}"))
    for f in files:
        target = destination + f[len(source.rstrip("/")):]
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(f, target, overwrite=True)


def _serving_module(task: Any) -> tf.Module:
    module = tf.Module()
    module.model = task.model
    module.serve = task.serving_signature
    return module


def _check_predictions(task: Any, path: str) -> None:
    """Reloads the export and compares it with the in-memory model on one evaluation batch."""
    features, _ = next(iter(task.eval_dataset(None)))
    expected = task.serving_signature(features)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    names = list(signature.structured_input_signature[1])
    got = signature(**(features if isinstance(features, Mapping) else {names[0]: features}))
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"exported model's {key!r} differs from the checkpoint's")


@preemption.exits_on_termination
def run(
    *,
    task: str,
    model_dir: str,
    output_path: str,
    task_config: Union[str, Mapping[str, Any], None] = None,
    checkpoint: Union[str, int] = "auto",
    eval_name: str = "validation",
    thresholds: Union[str, Mapping[str, str], None] = None,
    export_dir: Optional[str] = None,
) -> ExportResult:
    """Exports a checkpoint of `model_dir` as a SavedModel with the task's serving signature.

    Args:
        task: A registered task name or `package.module:factory`.
        model_dir: The run directory.
        output_path: Where the SavedModel goes (a KFP `Model` artifact path; on
            Vertex a /gcs/ path).
        task_config: The task's config (JSON object text or mapping).
        checkpoint: `auto` (`best` when evaluator `eval_name` pinned one, else
            `latest`), `best`, `latest`, a step, or a checkpoint path.
        eval_name: The evaluator whose records (and best checkpoint) to use.
        thresholds: `{"metric": ">= 0.9", ...}`: export only if the checkpoint's
            recorded metrics pass every one.
        export_dir: Also export to `<export_dir>/<step>/` (gs:// included).

    Returns:
        The step, checkpoint, paths, metrics and signature names.

    Raises:
        ValueError: For a bad input, naming it.
        ThresholdNotMetError: If a threshold is missed (nothing is written).
    """
    inputs = runtime.TaskInputs.parse(task, task_config)
    model_dir = checks.check_uri("model_dir", model_dir)
    output_path = checks.check_uri("output_path", output_path)
    if export_dir:
        export_dir = checks.check_uri("export_dir", export_dir)
    checks.check_eval_name(eval_name)
    limits = thresholds_lib.parse_thresholds(thresholds)

    directory = eval_records.eval_dir(model_dir, eval_name)
    if checkpoint == "auto":
        checkpoint = "best" if eval_records.read_best_record(directory) else "latest"
    path = runtime.resolve_checkpoint(model_dir, checkpoint, eval_name)
    step = run_dir.checkpoint_step(path)
    record = eval_records.EvalRecords(directory).read(step) if step is not None else None
    metrics = artifacts.kfp_metrics(record) if record else {}
    if limits:
        if record is None:
            raise ThresholdNotMetError(
                f"Not exporting {path}: `thresholds` are given but evaluator {eval_name!r} has no record of "
                f"step {step}; evaluate it first (continuous_eval or evaluate with this eval_name)."
            )
        thresholds_lib.check_thresholds(metrics, limits, step)

    built = inputs.build(runtime.create_strategy("default"))
    if built.serving_signature is None:
        raise ValueError(f"`task` ({task!r}) defines no serving signature to export.")
    restore.restore_checked(tf.train.Checkpoint(model=built.model), path)

    tmp = f"{output_path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tf.saved_model.save(_serving_module(built), tmp, signatures={"serving_default": built.serving_signature})
        run_dir.write_json_atomic(f"{tmp}/{EXPORT_INFO}", {"step": step, "checkpoint": path, "metrics": metrics})
        commit_saved_model(tmp, output_path)
    finally:
        run_dir.remove_if_present(tmp, tree=True)
    _check_predictions(built, output_path)
    export_path = None
    if export_dir:
        export_path = f"{export_dir}/{step}"
        commit_saved_model(output_path, export_path)
        _check_predictions(built, export_path)
    signatures = sorted(tf.saved_model.load(output_path).signatures.keys())
    print(f"export | step: {step} | checkpoint: {path} | saved model: {output_path}"
          + (f" | export: {export_path}" if export_path else ""), flush=True)
    return ExportResult(step=step, checkpoint=path, path=output_path, export_path=export_path,
                        metrics=metrics, signatures=signatures)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the entry point's flags, named as the component's inputs."""
    runtime.define_task_flags(with_strategy=False)
    flags.DEFINE_string("output_path", None, "Where to write the SavedModel.")
    flags.DEFINE_string("checkpoint", "auto", "'auto', 'best', 'latest', a step, or a checkpoint path.")
    flags.DEFINE_string("eval_name", "validation", "The evaluator whose records and best checkpoint to use.")
    flags.DEFINE_string("thresholds", "", "JSON object of metric thresholds, e.g. '{\"accuracy\": \">= 0.9\"}'.")
    flags.DEFINE_string("export_dir", "", "Also export to <export_dir>/<step>/ (gs:// included).")


def main(argv: list) -> None:
    del argv
    runtime.configure_logging()
    result = run(
        task=FLAGS.task, task_config=FLAGS.task_config, model_dir=FLAGS.model_dir, output_path=FLAGS.output_path,
        checkpoint=FLAGS.checkpoint, eval_name=FLAGS.eval_name, thresholds=FLAGS.thresholds,
        export_dir=FLAGS.export_dir or None,
    )
    print(f"export | done | {json.dumps(dataclasses.asdict(result), sort_keys=True)}", flush=True)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["task", "model_dir", "output_path"])
    app.run(main)
