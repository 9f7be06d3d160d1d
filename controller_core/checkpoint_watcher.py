"""Finding checkpoints to evaluate: fresh directory listings, evaluation policies, stop conditions.

The watcher lists `<prefix>-<step>.index` files on every poll instead of reading
the `checkpoint` state file or stat-ing paths: a listing is never served from
TensorFlow's GCS stat cache (5 s by default), which made pollers on gs:// miss
checkpoints. A checkpoint's `.index` is written last, so its presence means the
checkpoint is complete.
"""

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Union

import tensorflow as tf



Policy = Union[str, int]


def list_checkpoints(directory: str, name: str = "ckpt") -> Dict[int, str]:
    """Complete checkpoints `<directory>/<name>-<step>` by step, from a fresh listing.

    A save that failed while writing its `.index` (a full disk) leaves an empty
    one: the newest checkpoints are checked for that (one stat each, newest
    first, until a complete one) and left out.
    """
    found = {}
    for index in tf.io.gfile.glob(f"{directory.rstrip('/')}/{name}-*.index"):
        prefix = index[: -len(".index")]
        number = prefix.rsplit("-", 1)[-1]
        if number.isdigit():
            found[int(number)] = prefix
    for step in sorted(found, reverse=True):
        try:
            if tf.io.gfile.stat(f"{found[step]}.index").length > 0:
                break
        except tf.errors.NotFoundError:
            pass  # Deleted since the listing (the trainer's max_to_keep).
        del found[step]
    return found


def select_pending(
    available: Iterable[int],
    recorded: Iterable[int],
    policy: Policy,
    final_step: Optional[int] = None,
) -> List[int]:
    """The steps to evaluate next, in order, under `policy`.

    Args:
        available: Steps of the checkpoints present now.
        recorded: Steps already evaluated (by this or an earlier evaluator run).
        policy: `all`: every unrecorded checkpoint, oldest first; `latest`: the
            newest checkpoint if newer than every recorded one; a stride N: in
            ascending order, each checkpoint that crosses a multiple of N past the
            last evaluated step.
        final_step: Training's final step (from its completion marker): always
            evaluated, whatever the policy.

    Returns:
        Steps, ascending.
    """
    recorded = set(recorded)
    newest_recorded = max(recorded, default=-1)
    candidates = sorted(s for s in set(available) if s not in recorded)
    if policy == "all":
        chosen = candidates
    elif policy == "latest":
        chosen = [s for s in candidates[-1:] if s > newest_recorded]
    else:
        chosen, anchor = [], max(newest_recorded, 0)
        for step in candidates:
            if step > anchor and step // policy > anchor // policy:
                chosen.append(step)
                anchor = step
    if final_step is not None and final_step in candidates and final_step not in chosen:
        chosen.append(final_step)
    return sorted(chosen)


def checkpoint_name(manager: tf.train.CheckpointManager) -> str:
    """The file-name prefix a `CheckpointManager` saves under (`ckpt` unless set otherwise)."""
    prefix = getattr(manager, "_checkpoint_prefix", None)  # Not public in tf.train.CheckpointManager.
    return os.path.basename(prefix) if prefix else "ckpt"


@dataclasses.dataclass
class ContinuousEvalStats:
    """What one `evaluate_continuously` run did.

    Attributes:
        evaluated: Steps evaluated by this run, in order.
        skipped: Steps whose checkpoint was deleted (e.g. by the trainer's
            `max_to_keep`) after it was seen and before it could be restored.
        already_recorded: Steps an earlier run had evaluated, skipped by this one.
        last_step_seen: The newest checkpoint step seen.
        stop_reason: Why the loop ended.
        best: The best record at the end, when best tracking is on.
    """

    evaluated: List[int] = dataclasses.field(default_factory=list)
    skipped: List[int] = dataclasses.field(default_factory=list)
    already_recorded: List[int] = dataclasses.field(default_factory=list)
    last_step_seen: Optional[int] = None
    stop_reason: str = ""
    best: Optional[dict] = None
