"""Registering an exported SavedModel in Vertex AI Model Registry: what GCPC's `ModelUploadOp` is given.

The pipeline's `model-registration` step (`tfpipe.components.registration.definition`)
runs this after a gated export: it turns the export's `Model` artifact into the
`google.UnmanagedContainerModel` artifact `ModelUploadOp` uploads (the SavedModel's
URI, and the serving container that will serve it) and computes the model's labels
and description from the export's metadata. No TensorFlow here.

Labels (Vertex's rules: lowercase letters, digits, `_` and `-`, at most 63
characters): `tfpipe-run` (the pipeline job), `tfpipe-step` (the exported step),
`tfpipe-precision` (when given), and one `metric-<name>` per finite scalar metric the
model was exported with, its value written with `_` for `.` (`0.9531` → `0_9531`);
the description holds the same values as they are.

Before anything is uploaded, `check_export` verifies the export against its commit
marker's manifest (each file's size and SHA-256, `tfpipe.components.common.commits`): a
SavedModel changed after its commit, or a marker copied onto another model, is never
registered. That check reads the files through TensorFlow's file system (gs:// and
local alike), imported only then.
"""

import math
import re
from typing import Any, Dict, Mapping, Tuple

from tfpipe import checks

MAX_LABEL = 63
_NOT_LABEL = re.compile(r"[^a-z0-9_-]")
# GCPC's ModelUploadOp pastes the description between quotes into a JSON payload: keep it free of what would end the
# string.
_NOT_DESCRIPTION = re.compile(r'["\\\x00-\x1f]')


def label(text: Any) -> str:
    """`text` as a Vertex label key or value: lowercase, other characters as `_`, at most 63 characters."""
    return _NOT_LABEL.sub("_", str(text).lower())[:MAX_LABEL]


def _number(value: float) -> str:
    return f"{value:.6g}"


def labels_and_description(metadata: Mapping[str, Any], run_id: str) -> Tuple[Dict[str, str], str]:
    """The model's labels and description from an export's `Model` metadata (`step`, `metrics`, `precision`).

    Args:
        metadata: The export artifact's metadata.
        run_id: The pipeline job that exported it.

    Returns:
        `(labels, description)`.
    """
    metrics = {name: float(value) for name, value in sorted((metadata.get("metrics") or {}).items())
               if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
               and name != "step"}
    labels = {"tfpipe-run": label(run_id), "tfpipe-step": label(metadata.get("step", ""))}
    if metadata.get("precision"):
        labels["tfpipe-precision"] = label(metadata["precision"])
    for name, value in metrics.items():
        labels[label(f"metric-{name}")] = label(_number(value).replace(".", "_"))
    shown = ", ".join(f"{name} {_number(value)}" for name, value in metrics.items()) or "no recorded metrics"
    description = (f"tfpipe run {run_id}: step {metadata.get('step', '?')} ({shown}); exported from "
                   f"{metadata.get('checkpoint', '?')}")
    return labels, _NOT_DESCRIPTION.sub("'", description)[:2000]


def container_spec(serving_image: str) -> Dict[str, Any]:
    """The `UnmanagedContainerModel` metadata for a SavedModel served by `serving_image` (a prebuilt TF container)."""
    return {"containerSpec": {"imageUri": serving_image}}


def check_export(path: str, metadata: Mapping[str, Any]) -> None:
    """Refuses to register the export at `path` unless it is what its commit marker says, from this artifact.

    Args:
        path: The export's folder (`gs://...` or local).
        metadata: The export artifact's metadata (`checkpoint_fingerprint`: the checkpoint it was exported from).

    Raises:
        checks.RefusedError: If the folder has no commit marker, its files differ from the marker's manifest, or
            the marker names another checkpoint than the artifact's metadata.
    """
    from tfpipe.components.common import commits
    from tfpipe.components.export.runtime import EXPORT_INFO

    problem = commits.verify(path, marker=EXPORT_INFO)
    marker = commits.read_marker(f"{path.rstrip('/')}/{EXPORT_INFO}") or {}
    wanted = metadata.get("checkpoint_fingerprint")
    if problem is None and wanted and marker.get("checkpoint_fingerprint") != wanted:
        problem = (f"its marker names checkpoint fingerprint {marker.get('checkpoint_fingerprint')!r}, the export "
                   f"artifact {wanted!r}")
    if problem is not None:
        raise checks.RefusedError(f"Not registering the export at {path}: {problem}.")


def run_for_kfp(*, model: Any, serving_image: str, run_id: str, unmanaged_container_model: Any) -> Tuple[
        Dict[str, str], str]:
    """The model-registration step's body (`tfpipe.components.registration.definition`): checks the export, then
    fills `unmanaged_container_model` and returns the model's labels and description.

    A refusal (`check_export`) ends the step as the components' own steps end theirs: one line on stderr,
    `model-registration: refused: ...`, and status 1, with no traceback; nothing is uploaded.
    """
    # Imports TensorFlow, which check_export reads the export with anyway.
    from tfpipe.components import entry_point  # pylint: disable=import-outside-toplevel

    @entry_point.exit_on_input_error("model-registration")
    def register() -> Tuple[Dict[str, str], str]:
        # A gs:// URI is read directly (on Vertex, the same objects as the `/gcs/` mount of `.path`).
        check_export(model.uri if model.uri.startswith("gs://") else model.path, dict(model.metadata))
        unmanaged_container_model.uri = model.uri
        unmanaged_container_model.metadata.update(container_spec(serving_image))
        labels, description = labels_and_description(dict(model.metadata), run_id)
        print(f"model-registration | {model.uri} | served by {serving_image} | labels: {labels}", flush=True)
        return labels, description

    return register()
