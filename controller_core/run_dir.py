"""Files the controller keeps in a run directory, and how they are written.

Every JSON file here is written whole or not at all: the content goes to a
temporary sibling first and is then renamed into place (on GCS a rename is a
copy of a complete object, so a reader never sees half a file).
"""

import json
import os
import time
import uuid
from typing import Any, Dict, Mapping, Optional

import numpy as np

import tensorflow as tf

# Written by `Controller.train` (next to the checkpoints) once it reaches its target step;
# continuous evaluation stops once it has evaluated the step it names.
TRAINING_COMPLETE = "training_complete.json"


def write_json_atomic(path: str, value: Any, *, overwrite: bool = True) -> None:
    """Writes `value` as JSON to `path`, atomically.

    Args:
        path: Destination (any `tf.io.gfile` URI).
        value: A JSON-serialisable value.
        overwrite: Whether an existing file may be replaced.

    Raises:
        tf.errors.AlreadyExistsError: If `path` exists and `overwrite` is False.
    """
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=True), overwrite=overwrite)


def write_text_atomic(path: str, text: str, *, overwrite: bool = True) -> None:
    """Writes `text` to `path` through a temporary sibling and a rename.

    Args:
        path: Destination (any `tf.io.gfile` URI).
        text: The content.
        overwrite: Whether an existing file may be replaced.

    Raises:
        tf.errors.AlreadyExistsError: If `path` exists and `overwrite` is False.
    """
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=overwrite)
    finally:
        remove_if_present(tmp)


def remove_if_present(path: str, *, tree: bool = False) -> None:
    """Removes the file (or, with `tree`, the directory tree) at `path`; absent is fine.

    No exists-then-remove: that is a request more, and wrong when a retried
    delete already removed the object (its reply was lost) or a cached stat
    still says it exists.
    """
    try:
        (tf.io.gfile.rmtree if tree else tf.io.gfile.remove)(path)
    except tf.errors.NotFoundError:
        pass


def read_json(path: str) -> Optional[Any]:
    """Returns the JSON value stored at `path`, or None when there is no such file."""
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    except tf.errors.NotFoundError:
        return None


def training_complete_path(directory: str) -> str:
    """The completion marker's path in the checkpoint directory `directory`."""
    return f"{directory.rstrip('/')}/{TRAINING_COMPLETE}"


def read_training_complete(directory: str) -> Optional[Dict[str, Any]]:
    """The completion marker in the checkpoint directory `directory`, or None."""
    return read_json(training_complete_path(directory))


def write_training_complete(
    directory: str, *, step: int, target_step: int, checkpoint: Optional[str], train_output: Mapping[str, Any]
) -> None:
    """Writes the completion marker: training reached `target_step`; a marker already at `step` is kept.

    Args:
        directory: The checkpoint directory.
        step: The final global step (its checkpoint is saved and synced).
        target_step: The step training was asked to reach.
        checkpoint: The final checkpoint's path.
        train_output: The last train loop's output; its scalar leaves are kept.
    """
    path = training_complete_path(directory)
    previous = read_json(path)
    if previous is not None and previous.get("step") == step:
        return
    write_json_atomic(path, {
        "step": int(step),
        "target_step": int(target_step),
        "checkpoint": checkpoint,
        "train_output": flatten_scalars(train_output),
        "time": time.time(),
    })


def clear_stale_training_complete(directory: str, target_step: int) -> None:
    """Removes a completion marker short of `target_step`: training towards it makes the marker stale."""
    marker = read_training_complete(directory)
    if marker is not None and int(marker.get("step", -1)) < target_step:
        remove_if_present(training_complete_path(directory))


def checkpoint_step(checkpoint_path: str) -> Optional[int]:
    """Returns N for a checkpoint prefix `.../<name>-N`, or None when it has no number."""
    _, _, number = os.path.basename(checkpoint_path).rpartition("-")
    return int(number) if number.isdigit() else None


def flatten_scalars(output: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    """Flattens an output dictionary to `{"a/b": float}`, keeping its scalar leaves only."""
    flat: Dict[str, float] = {}
    for key, value in output.items():
        if isinstance(value, Mapping):
            flat.update(flatten_scalars(value, f"{prefix}{key}/"))
            continue
        if tf.is_tensor(value) or isinstance(value, tf.Variable):
            value = value.numpy()
        if np.ndim(value) == 0 and isinstance(value, (int, float, np.number, np.bool_)):
            flat[f"{prefix}{key}"] = float(value)
    return flat
