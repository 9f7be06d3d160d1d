"""The checkpoint layout the components share, and choosing a checkpoint of a run directory.

A `checkpoint` input names one checkpoint: `latest`, `best` (the copy an evaluator
pinned), `auto` (`best` when pinned, else `latest`), a step, or a checkpoint path.
The record of an evaluation belongs to the checkpoint it judged, by path: a record
is never applied to another checkpoint with the same step (`record_of`).
"""

import os
from typing import Any, Dict, Optional, Tuple

from absl import logging
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import fenced_saves
from tfpipe.components.tasks import Task
from tfpipe.controller_core import checkpoint_watcher
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import run_dir


STATE_FILE = "checkpoint"  # TensorFlow's checkpoint state file (the manager's latest checkpoint).


def task_checkpoint(task: Task, **extra: Any) -> tf.train.Checkpoint:
    """The checkpoint layout every component shares: model, optimizer (if any), the task's items, `extra`."""
    items = {"model": task.model, **task.checkpoint_items, **extra}
    if task.optimizer is not None:
        items["optimizer"] = task.optimizer
    return tf.train.Checkpoint(**items)


def resolve_checkpoint(model_dir: str, checkpoint: Any, eval_name: str) -> str:
    """Resolves a `checkpoint` input (see the module docstring) to a checkpoint path.

    Args:
        model_dir: The run directory.
        checkpoint: The selector, already checked by `checks.check_checkpoint_selector`.
        eval_name: The evaluator whose best checkpoint `best` and `auto` mean.

    Raises:
        checks.InputError: If the selector names no existing checkpoint; the message says what exists.
    """
    if checkpoint == "auto":
        has_best = eval_records.read_best_record(eval_records.eval_dir(model_dir, eval_name)) is not None
        checkpoint = "best" if has_best else "latest"
    available = checkpoint_watcher.list_checkpoints(model_dir)
    if checkpoint == "latest":
        if not available:
            raise checks.InputError(
                f"`checkpoint` is 'latest' but `model_dir` ({model_dir}) holds no checkpoint yet.")
        return available[max(available)]
    if checkpoint == "best":
        best = eval_records.read_best_record(eval_records.eval_dir(model_dir, eval_name))
        if best is None:
            raise checks.InputError(
                f"`checkpoint` is 'best' but evaluator {eval_name!r} has no best checkpoint in {model_dir} "
                "(run continuous_eval with a best metric first, or pass 'latest' or a step)."
            )
        return best["best_checkpoint"]
    if isinstance(checkpoint, int):
        if checkpoint not in available:
            raise checks.InputError(
                f"`checkpoint` is step {checkpoint}, but `model_dir` ({model_dir}) has checkpoints at steps "
                f"{sorted(available)}."
            )
        return available[checkpoint]
    if not tf.io.gfile.exists(f"{checkpoint}.index"):
        raise checks.InputError(
            f"`checkpoint` ({checks.shown(checkpoint)}) is no checkpoint: {checkpoint}.index does not exist.")
    if run_dir.checkpoint_step(checkpoint) is None:
        raise checks.InputError(
            f"`checkpoint` ({checks.shown(checkpoint)}) has no step number: a checkpoint is named <prefix>-<step>.")
    return checkpoint


def record_of(model_dir: str, eval_name: str, path: str) -> Optional[Dict[str, Any]]:
    """The evaluation record of exactly the checkpoint at `path`, or None when it was never evaluated.

    Records are kept by step; one only counts when it judged this checkpoint's content (its fingerprint; its
    path, for a record without one), so a copy (the pinned best) finds its original's record and another
    checkpoint with the same step never borrows it.
    """
    step = run_dir.checkpoint_step(path)
    directory = eval_records.eval_dir(model_dir, eval_name)
    fingerprint = eval_records.checkpoint_fingerprint(path)
    candidates = [eval_records.read_best_record(directory)]
    if step is not None:
        candidates.append(eval_records.EvalRecords(directory).read(step))
    for record in candidates:
        if record is None or record.get("step") != step:
            continue
        recorded = record.get("checkpoint_fingerprint")
        if (recorded is not None and recorded == fingerprint) or (recorded is None and record["checkpoint"] == path):
            return record
    return None


def latest_complete_checkpoint(model_dir: str) -> Optional[str]:
    """The newest complete checkpoint in `model_dir` (from a fresh listing, not the state file), or None."""
    available = checkpoint_watcher.list_checkpoints(model_dir)
    return available[max(available)] if available else None


def recover_checkpoint_state(model_dir: str) -> Optional[str]:
    """Makes the `checkpoint` state file name the newest complete checkpoint, and removes dead save temporaries.

    A state file that is missing, unreadable, or names a checkpoint that is not complete would make the
    `CheckpointManager` start from step 0 and save over the existing checkpoints. Call it before creating the
    trainer's manager, holding the writer lease (no other save can be under way).

    Returns:
        The checkpoint the state file names after the repair, or None when there is none.
    """
    for temp in tf.io.gfile.glob(f"{model_dir}/*-*_temp"):  # Left by a save that was killed mid-way.
        run_dir.remove_if_present(temp, tree=True)
    fenced_saves.remove_staged(model_dir)
    available = checkpoint_watcher.list_checkpoints(model_dir)
    if not available:
        return None
    latest = available[max(available)]
    state, unreadable = read_checkpoint_state(model_dir)
    named = os.path.basename(state.model_checkpoint_path) if state is not None else None
    if named == os.path.basename(latest):
        return latest
    kept = ""
    if unreadable is not None:  # Kept for a post-mortem: the state file is rebuilt, never its evidence deleted.
        kept = f"{model_dir.rstrip('/')}/{STATE_FILE}.unreadable"
        tf.io.gfile.copy(f"{model_dir.rstrip('/')}/{STATE_FILE}", kept, overwrite=True)
        kept = f" (its damaged content is kept in {kept})"
    tf.compat.v1.train.update_checkpoint_state(
        model_dir, latest, all_model_checkpoint_paths=[available[step] for step in sorted(available)])
    why = (f"unreadable ({unreadable})" if unreadable else "missing" if state is None
           else f"named {named}, not the newest complete checkpoint")
    message = (f"the checkpoint state file of {model_dir} was {why}: recovered {os.path.basename(latest)} from the "
               f"checkpoint files{kept}")
    logging.warning(message)
    print(f"train | {message}", flush=True)
    return latest


def read_checkpoint_state(model_dir: str) -> Tuple[Optional[Any], Optional[str]]:
    """The `checkpoint` state file of `model_dir`: `(state, None)`, `(None, None)` when it is missing, or
    `(None, why)` when it cannot be read (empty, not UTF-8, not a text proto, naming no checkpoint)."""
    try:
        state = tf.train.get_checkpoint_state(model_dir)  # None for a missing file, or an unparsable one.
    except (ValueError, UnicodeDecodeError) as e:  # An empty file, or bytes that are not UTF-8.
        return None, f"{type(e).__name__}: {checks.clipped(str(e), 120)}"
    if state is None and tf.io.gfile.exists(f"{model_dir.rstrip('/')}/{STATE_FILE}"):
        return None, "not a checkpoint state text proto"
    return state, None
