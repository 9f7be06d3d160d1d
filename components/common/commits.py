"""Commits that mean committed: content first, verified, then a marker written last and only once.

A destination folder (a SavedModel export, a TF Serving version under `export_dir`)
is committed when its marker file exists; the marker holds a manifest (each file's
relative path, size and SHA-256), so a committed folder whose content changed
afterwards, or a marker copied onto another model, is detected (`verify`). On a local
disk the folder is written and verified under a temporary name (a dot-name sibling,
which TF Serving never takes for a version) and renamed into place with its marker,
so a partial folder is never visible (`publish`). On Cloud Storage, where a rename is
a copy, the content is written under a temporary prefix, verified, then copied into
place with `saved_model.pb` last (loaders look for it) and the marker after it,
created, create-only: with an object precondition on Cloud Storage
(`if_generation_match=0`, for `gs://` and `/gcs/` paths alike), with an exclusive
hard link on a local disk. So a partial copy (a full disk, a killed pod) is never
taken as done and the retry completes it, and of two writers racing for one
destination exactly one commits; the other finds the marker and checks that it
names the same content.
"""

import errno
import hashlib
import json
import os
import tempfile
import uuid
from typing import Any, Callable, Dict, Mapping, Optional

import tensorflow as tf

from tfpipe.components.common import gcs
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
    """A fresh sibling path of `destination` for writing before the commit (a dot name: no TF Serving version)."""
    parent, name = os.path.split(destination.rstrip("/"))
    return f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}" if parent else f".{name}.tmp-{uuid.uuid4().hex[:8]}"


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """The SHA-256 of the file at `path`, read in chunks (never whole)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def manifest(directory: str, *, marker: str) -> Dict[str, Dict[str, Any]]:
    """`{relative path: {"size": bytes, "sha256": hex}}` of every file under `directory` but its `marker`."""
    top, files = directory.rstrip("/"), {}
    for root, _, names in tf.io.gfile.walk(top):
        root = root.rstrip("/")
        for name in names:
            relative = f"{root}/{name}"[len(top) + 1:]
            if relative != marker:
                path = f"{top}/{relative}"
                files[relative] = {"size": tf.io.gfile.stat(path).length, "sha256": file_sha256(path)}
    return dict(sorted(files.items()))


def differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> Optional[str]:
    """What differs between two manifests, in words, or None when they agree."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    changed = sorted(name for name in set(found) & set(expected) if found[name] != expected[name])
    parts = [f"{what} {names[:5]}{' ...' if len(names) > 5 else ''}" for what, names in (
        ("missing", missing), ("not in the manifest", extra), ("changed", changed)) if names]
    return "; ".join(parts) or None


def verify(directory: str, *, marker: str) -> Optional[str]:
    """Why the committed folder `directory` is not what its marker says, or None when it is.

    Not committed (no marker), a marker without a manifest, and any file missing, added or changed since the
    commit are reasons.
    """
    info = read_marker(f"{directory.rstrip('/')}/{marker}")
    if info is None:
        return f"it has no commit marker ({marker})"
    if not isinstance(info.get("manifest"), Mapping):
        return f"its marker {marker} holds no manifest of the files"
    problem = differences(manifest(directory, marker=marker), info["manifest"])
    return f"its files differ from its marker's manifest: {problem}" if problem else None


def publish(source: str, destination: str, *, marker: str, info: Mapping[str, Any],
            check: Callable[[str], None] = lambda path: None) -> bool:
    """Commits a copy of `source` at `destination` with the marker `info` (holding `manifest`), never partly visible.

    The copy is made under a temporary sibling name and verified against `info["manifest"]` and by `check`. On a
    local disk it then gets its marker and is renamed into place (atomic); on Cloud Storage (and where
    `destination` exists already without a marker: an interrupted commit) it is copied into place, verified
    again, and the marker is created last.

    Returns:
        Whether this call committed it (False: another writer committed `destination` first).

    Raises:
        RuntimeError: If a copy does not match the manifest (nothing is marked committed).
    """
    temp = staging_path(destination)
    marker_path = f"{destination.rstrip('/')}/{marker}"
    try:
        copy_tree(source, temp, marker=marker)
        _raise_if_differs(temp, info["manifest"], marker)
        check(temp)
        if gcs.gcs_location(destination) is None and not tf.io.gfile.exists(destination):
            if not create_only(f"{temp}/{marker}", info):
                raise RuntimeError(f"{temp} is this export's own temporary folder, yet it has a marker")
            try:
                os.rename(temp, destination)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return False  # Another writer renamed its complete copy into place first.
            return True
        copy_tree(temp, destination, marker=marker)
        _raise_if_differs(destination, info["manifest"], marker)
        return create_only(marker_path, info)
    finally:
        run_dir.remove_if_present(temp, tree=True)


def _raise_if_differs(directory: str, expected: Mapping[str, Any], marker: str) -> None:
    problem = differences(manifest(directory, marker=marker), expected)
    if problem:
        raise RuntimeError(f"The copy at {directory} does not match what was exported ({problem}); not committed.")
