"""The export component: a SavedModel of the chosen checkpoint, committed only when complete and verified.

    python -m tfpipe.components.export --task=digits --model_dir=gs://bucket/runs/1 \\
        --output_path=/tmp/model --export_dir=gs://bucket/serving/digits --thresholds='{"accuracy": ">= 0.9"}'

The SavedModel is written to a temporary sibling, copied under another temporary
name, reloaded and compared with the checkpointed model on a sample batch, and only
then marked committed by `tfpipe_export.json` (the step, checkpoint and its
fingerprint, the metrics it was exported with, and the manifest of its files) and
renamed into place (on Cloud Storage: copied, `saved_model.pb` then the marker last;
`tfpipe.components.common.commits`). A destination without the marker is an interrupted
commit and is completed; one whose marker names another checkpoint, or whose files
are not those of its marker's manifest and of this checkpoint, is never overwritten
nor accepted. Under `export_dir` each export lands in `<export_dir>/<step>/` (a TF
Serving version). Under a mixed `precision` the model computes in float16 or
bfloat16 but the exported signature takes and returns float32. Where Vertex sets
`AIP_MODEL_DIR`, an empty `export_dir` is that directory
(`tfpipe.components.common.vertex_env`). Inputs: `tfpipe.components.export.inputs.INTERFACE`.
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import artifacts
from tfpipe.components.common import checkpoints
from tfpipe.components.common import commits
from tfpipe.components import entry_point
from tfpipe.components.common import eval_setup
from tfpipe.components.common import precision as precision_lib
from tfpipe.components.common import strategy as strategy_lib
from tfpipe.components.common import thresholds as thresholds_lib
from tfpipe.components.export.inputs import INTERFACE
from tfpipe.components.evaluate.runtime import resolve_own_checkpoint
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption
from tfpipe.controller_core import restore
from tfpipe.controller_core import run_dir

# The commit marker beside saved_model.pb: what was exported, so that a retry knows it is done and a later run can
# compare itself with this model when it is imported as a baseline (by URI, artifact metadata does not travel).
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
    checkpoint_fingerprint: str = ""
    exported: bool = True


def _serving_module(task: Any) -> tf.Module:
    module = tf.Module()
    module.model = task.model
    module.serve = task.serving_signature
    return module


def _check_predictions(task: Any, path: str) -> None:
    """Reloads the export at `path` and compares it with the in-memory model on one evaluation batch.

    Raises:
        AssertionError: If the export predicts something else.
    """
    if task.serving_inputs is not None:
        features = task.serving_inputs()
    elif task.eval_dataset is not None:
        features, _ = next(iter(task.eval_dataset(None)))
    else:
        return
    expected = task.serving_signature(features)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    names = list(signature.structured_input_signature[1])
    got = signature(**(features if isinstance(features, Mapping) else {names[0]: features}))
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"exported model's {key!r} differs from the checkpoint's")


def commit_export(task: Any, source: str, destination: str, info: Mapping[str, Any]) -> bool:
    """Commits the SavedModel at `source` to `destination`: a verified copy under a temporary name, then in place.

    The marker gets the manifest of `source` (each file's path, size and SHA-256). A destination committed
    before is accepted only when it holds this checkpoint's export: the same checkpoint fingerprint, files that
    match its own marker's manifest, and the same predictions as the checkpointed model on a sample batch.

    Args:
        task: The task (its serving signature and data verify the copy).
        source: A complete SavedModel.
        destination: Where it goes.
        info: The marker's content; `checkpoint_fingerprint` identifies what was exported.

    Returns:
        Whether this call committed it (False: it was committed already, with the same model).

    Raises:
        checks.InputError: If `destination` already holds another model, or content its marker does not
            describe (nothing is overwritten).
    """
    info = {**info, "manifest": commits.manifest(source, marker=EXPORT_INFO)}
    marker_path = f"{destination}/{EXPORT_INFO}"
    existing = commits.read_marker(marker_path)
    if existing is None:
        if commits.publish(source, destination, marker=EXPORT_INFO, info=info,
                           check=lambda path: _check_predictions(task, path)):
            return True
        existing = commits.read_marker(marker_path)  # Another exporter committed it meanwhile.
    _check_committed(task, destination, existing, info)
    return False


def _check_committed(task: Any, destination: str, existing: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Refuses a committed `destination` that is not this export (see `commit_export`)."""
    if existing.get("checkpoint_fingerprint") != info["checkpoint_fingerprint"]:
        raise checks.InputError(
            f"{destination} already holds another model (exported from {existing.get('checkpoint')} at step "
            f"{existing.get('step')}); nothing was overwritten. Export to another place, or remove it yourself."
        )
    problem = commits.verify(destination, marker=EXPORT_INFO)
    if problem is None:
        try:
            _check_predictions(task, destination)
        except AssertionError as e:
            problem = f"it predicts otherwise than {info['checkpoint']} ({str(e).strip().splitlines()[0]})"
    if problem is not None:
        raise checks.InputError(
            f"{destination} has a commit marker naming {existing.get('checkpoint')} (step {existing.get('step')}), "
            f"but {problem}: it was changed after the commit, or the marker belongs to another model. Nothing was "
            "overwritten or accepted; export to another place, or remove it yourself."
        )


@preemption.exits_on_termination
@INTERFACE.takes_inputs()
def run(args: Any) -> ExportResult:
    """Exports a checkpoint of `model_dir` as a SavedModel with the task's serving signature (inputs: `INTERFACE`).

    With `passed` false nothing is read or written: the result says `exported=False` (step -1), so that a DAG's
    always-running export step can output whether it exported.

    Returns:
        The step, checkpoint, paths, metrics and signature names.

    Raises:
        checks.InputError: For a bad input, naming it; a threshold on a metric the task lacks included.
        thresholds_lib.ThresholdNotMetError: If a threshold is missed (nothing is written).
    """
    if not args.passed:
        print("export | not exported: `passed` is false (the gate did not pass)", flush=True)
        return ExportResult(step=-1, checkpoint="", path="", export_path=None, metrics={}, signatures=[],
                            exported=False)
    path = resolve_own_checkpoint(args, args.eval_name)
    step = run_dir.checkpoint_step(path)
    built = eval_setup.load_task(args, distribution=strategy_lib.create_strategy("default"), metrics=args.thresholds,
                                 data_optional=True)
    if built.serving_signature is None:
        raise checks.InputError(built.no_serving_reason or f"`task` ({args.task!r}) defines no serving signature to export.")
    if args.precision != precision_lib.FLOAT32:  # The model computes in 16 bits; its callers see float32.
        built.serving_signature = precision_lib.float32_signature(built.serving_signature)
    record = checkpoints.record_of(args.model_dir, args.eval_name, path)
    metrics = artifacts.kfp_metrics(record) if record else {}
    if args.thresholds:
        if record is None:
            raise thresholds_lib.ThresholdNotMetError(
                f"Not exporting {path}: `thresholds` are given but evaluator {args.eval_name!r} has no record of "
                "this checkpoint; evaluate it first (continuous_eval or evaluate with this eval_name)."
            )
        thresholds_lib.check_thresholds(metrics, args.thresholds, step)
    restore.restore_checked(tf.train.Checkpoint(model=built.model), path)
    info = {"step": step, "checkpoint": path, "checkpoint_fingerprint": eval_records.checkpoint_fingerprint(path), "metrics": metrics}

    staging = commits.staging_path(args.output_path)
    try:
        tf.saved_model.save(_serving_module(built), staging, signatures={"serving_default": built.serving_signature})
        commit_export(built, staging, args.output_path, info)
    finally:
        run_dir.remove_if_present(staging, tree=True)
    export_path = None
    if args.export_dir:
        export_path = f"{args.export_dir}/{step}"
        commit_export(built, args.output_path, export_path, info)
    for committed in [args.output_path] + ([export_path] if export_path else []):
        problem = commits.verify(committed, marker=EXPORT_INFO)  # What this step outputs is what it committed.
        if problem is not None:
            raise RuntimeError(f"The export at {committed} is not what was committed: {problem}.")
    signatures = sorted(tf.saved_model.load(args.output_path).signatures.keys())
    print(f"export | step: {step} | checkpoint: {path} | saved model: {args.output_path}"
          + (f" | export: {export_path}" if export_path else ""), flush=True)
    return ExportResult(step=step, checkpoint=path, path=args.output_path, export_path=export_path,
                        metrics=metrics, signatures=signatures,
                        checkpoint_fingerprint=info["checkpoint_fingerprint"])


@entry_point.exit_on_input_error("export")
def run_for_kfp(*, model: Any, **inputs: Any) -> tuple:
    """The KFP component's body: `run(**inputs)` into the model artifact, then its metadata.

    When nothing was exported (`passed` false) the model artifact is an empty folder whose metadata says
    `exported: false`.
    """
    result = run(**inputs, output_path=model.path)
    if not result.exported:
        tf.io.gfile.makedirs(model.path)
        model.metadata.update({"exported": False})
        return result.step, "", False
    model.metadata.update({
        "framework": "tensorflow", "exported": True, "step": result.step, "checkpoint": result.checkpoint,
        "checkpoint_fingerprint": result.checkpoint_fingerprint, "metrics": result.metrics,
        "signatures": result.signatures, "export_path": result.export_path or "",
        "precision": inputs.get("precision", precision_lib.FLOAT32),
    })
    return result.step, result.export_path or "", True


def main(values: Dict[str, Any]) -> None:
    result = run(**values)
    print(f"export | done | {json.dumps(dataclasses.asdict(result), sort_keys=True)}", flush=True)

