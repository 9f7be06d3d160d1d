"""Finding checkpoints to evaluate: fresh directory listings, policies, and a durable iterator.

The watcher lists `<prefix>-<step>.index` files on every poll instead of reading
the `checkpoint` state file or stat-ing paths: a listing is never served from
TensorFlow's GCS stat cache (5 s by default), which made pollers on gs:// miss
checkpoints. A checkpoint's `.index` is written last, so its presence means the
checkpoint is complete.
"""

import os
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from absl import logging
import tensorflow as tf

from tfpipe.controller_core import run_dir
from tfpipe.controller_core import tf_internals

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
    return os.path.basename(tf_internals.checkpoint_prefix(manager))


class CheckpointIterator:
    """Yields the checkpoints to evaluate, `(step, path)`, until training is over.

    Unlike `tf.train.checkpoints_iterator` it is durable and exhaustive: every
    poll is a fresh listing; steps in `recorded` (evaluated by this or an
    earlier run) are never yielded; `policy` picks among the others (oldest
    first); a checkpoint that vanished after it was seen and before it was
    yielded (the trainer's `max_to_keep`) is reported and counted in `skipped`.

    Iteration ends, with `stop_reason` set, when training's completion marker
    names a step that is recorded or gone (a marker short of `target_step`
    does not count: more training is expected); right after a step at or past
    `target_step` was yielded; or, as in Orbit, when no new checkpoint came for
    `timeout` seconds and `timeout_fn` (if given) returns True. When nothing new
    came for `idle_timeout` seconds it ends with `failure` set: the caller
    decides that a trainer gone quiet is an error.

    The consumer tells the iterator what became of each yielded step:
    `mark_recorded(step)` once recorded, `skip_deleted(step, path)` when the
    checkpoint could not be restored because it is gone.
    """

    def __init__(
        self,
        directory: str,
        *,
        name: str = "ckpt",
        recorded: Iterable[int] = (),
        policy: Policy = "all",
        target_step: Optional[int] = None,
        timeout: Optional[float] = None,
        timeout_fn: Optional[Callable[[], bool]] = None,
        idle_timeout: Optional[float] = None,
        poll_interval: float = 1.0,
    ) -> None:
        """Initializes the iterator.

        Args:
            directory: The checkpoint directory.
            name: The checkpoints' file-name prefix.
            recorded: Steps already evaluated.
            policy: `all`, `latest` or a stride (see `select_pending`).
            target_step: Stop once a step at or past this one is yielded.
            timeout: Orbit's timeout: seconds without a new checkpoint before
                calling `timeout_fn` (or stopping, without one).
            timeout_fn: Called after `timeout`; True stops.
            idle_timeout: Seconds without a new checkpoint (counted from the
                last new checkpoint or the consumer's last return) after which
                iteration ends with `failure` set.
            poll_interval: Seconds between listings.
        """
        self.directory = directory.rstrip("/")
        self._name = name
        self._recorded = set(recorded)
        self._policy = policy
        self._target_step = target_step
        self._timeout = timeout
        self._timeout_fn = timeout_fn
        self._idle_timeout = idle_timeout
        self._poll_interval = poll_interval
        self.skipped: List[int] = []
        self.last_step_seen: Optional[int] = None
        self.stop_reason = ""
        self.failure: Optional[str] = None

    def mark_recorded(self, step: int) -> None:
        """Records that `step` is evaluated and recorded."""
        self._recorded.add(step)

    def skip_deleted(self, step: int, path: str) -> None:
        """Reports that the checkpoint of `step` was deleted before it could be evaluated."""
        self.skipped.append(step)
        logging.warning("Checkpoint %s was deleted before it could be evaluated; skipped.", path)
        print(f" eval | step: {step: 6d} | skipped: checkpoint deleted before evaluation ({path})", flush=True)

    def __iter__(self) -> Iterator[Tuple[int, str]]:
        seen_pending: Set[int] = set()
        last_activity = time.monotonic()
        while True:
            available = list_checkpoints(self.directory, self._name)
            newest = max(available, default=None)
            if newest is not None and (self.last_step_seen is None or newest > self.last_step_seen):
                self.last_step_seen = newest
                last_activity = time.monotonic()
            for step in sorted(seen_pending - set(available) - self._recorded):
                self.skip_deleted(step, f"{self.directory}/{self._name}-{step}")
                seen_pending.discard(step)
            marker = run_dir.read_training_complete(self.directory)
            final_step = int(marker["step"]) if marker else None
            pending = select_pending(available, self._recorded, self._policy, final_step)
            seen_pending.update(pending)

            if pending:
                step = pending[0]
                seen_pending.discard(step)
                yield step, available[step]
                last_activity = time.monotonic()
                if self._target_step is not None and step >= self._target_step:
                    self.stop_reason = f"target step {self._target_step} evaluated (step {step})"
                    return
                continue

            if self._should_stop(final_step, set(available)):
                return
            idle = time.monotonic() - last_activity
            if self._idle_timeout is not None and idle > self._idle_timeout:
                self.stop_reason = "idle timeout"
                self.failure = self._idle_message(idle, final_step)
                return
            if self._timeout is not None and idle > self._timeout:
                if self._timeout_fn is None or self._timeout_fn():
                    self.stop_reason = f"no new checkpoint for {self._timeout} s"
                    return
                last_activity = time.monotonic()
            time.sleep(self._poll_interval)

    def _should_stop(self, final_step: Optional[int], available: Set[int]) -> bool:
        """Sets `stop_reason` when training is over (as far as this evaluator is concerned)."""
        target = self._target_step
        if final_step is not None and (target is None or final_step >= target):
            if final_step in self._recorded or final_step not in available:
                if final_step not in self._recorded:
                    path = f"{self.directory}/{self._name}-{final_step}"
                    state = ("is incomplete (its .index is empty), left as it is" if tf.io.gfile.exists(
                        f"{path}.index") else "is gone")
                    logging.warning("Training finished at step %d but its checkpoint %s %s; not evaluated.",
                                    final_step, path, state)
                    print(f" eval | step: {final_step: 6d} | not evaluated: the final checkpoint {path} {state}",
                          flush=True)
                self.stop_reason = f"training complete at step {final_step}"
                return True
        if target is not None and self._recorded and max(self._recorded) >= target:
            self.stop_reason = f"target step {target} already evaluated"
            return True
        return False

    def _idle_message(self, idle: float, final_step: Optional[int]) -> str:
        seen = self.last_step_seen
        finished = (
            f"{run_dir.TRAINING_COMPLETE} says training finished at step {final_step}, short of "
            f"`target_step` {self._target_step}" if final_step is not None
            else f"the trainer seems to have stopped before finishing (no {run_dir.TRAINING_COMPLETE})"
        )
        return (
            f"No new checkpoint in {self.directory} for {idle:.0f} s (`idle_timeout`={self._idle_timeout}); "
            f"last step seen: {seen if seen is not None else 'none'}; {finished}."
        )
