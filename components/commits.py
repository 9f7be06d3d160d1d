"""Commits that mean committed: content first, verified, then a marker written last and only once.

A destination folder (a SavedModel export, a TF Serving version under `export_dir`)
is committed when its marker file exists. Files are copied with `saved_model.pb`
last (loaders look for it), the result is verified, and only then is the marker
created, create-only: with an object precondition on Cloud Storage
(`if_generation_match=0`, for `gs://` and `/gcs/` paths alike), with an exclusive
hard link on a local disk. So a partial copy (a full disk, a killed pod) is never
taken as done and the retry completes it, and of two writers racing for one
destination exactly one commits; the other finds the marker and checks that it
names the same content.
"""

import json
import os
import tempfile
import uuid
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from tfpipe.components import gcs
from tfpipe.controller_core import run_dir

SAVED_MODEL_PB = "saved_model.pb"


def read_marker(path: str) -> Optional[Dict[str, Any]]:
    """The marker at `path`, or None when there is none (an incomplete or absent commit)."""
    return run_dir.read_json(path)


def create_only(path: str, value: Mapping[str, Any]) -> bool:
    """Writes `value` as JSON to `path` unless something is there already.

    Returns:
        Whether it was written (False: another writer's marker was there first).
    """
    text = json.dumps(dict(value), indent=2, sort_keys=True)
    location = gcs.gcs_location(path)
    if location is not None:
        from google.api_core import exceptions

        try:
            gcs.blob(*location).upload_from_string(
                text, content_type="application/json", if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # Fails if `path` exists: an exclusive, atomic publication of a complete file.
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def copy_tree(source: str, destination: str, *, marker: str) -> None:
    """Copies every file of `source` except its commit `marker` to `destination`, `saved_model.pb` last."""
    top, files = source.rstrip("/"), []
    for root, _, names in tf.io.gfile.walk(source):
        root = root.rstrip("/")
        files += [f"{root}/{name}" for name in names if not (root == top and name == marker)]
    files.sort(key=lambda f: f.endswith(f"/{SAVED_MODEL_PB}"))
    for f in files:
        target = destination.rstrip("/") + f[len(top):]
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(f, target, overwrite=True)


def staging_path(destination: str) -> str:
    """A fresh sibling path of `destination` for writing before the commit."""
    return f"{destination.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
