"""Continuous evaluation: every checkpoint of a training run evaluated once, durably recorded.

`ContinuousEvaluator` drives a `Controller`: a `checkpoint_watcher.CheckpointIterator`
says which checkpoint is next; the controller restores and evaluates it; an
`eval_records.EvalRecords` file records it (before the controller's own eval
actions run, so they see it); `eval_records.BestCheckpoint` stages each
checkpoint before it is restored and pins the best one, so the trainer's
`max_to_keep` can never take the best away, and repairs the pin on start.
`run()` returns what it did as a `ContinuousEvalStats`::

    for step, path in CheckpointIterator(directory, recorded=records.steps(), ...):
        controller.restore_checkpoint(path)
        controller.evaluate(steps)     # first eval action: write the record, pin if best

Records are never rewritten, so a restarted evaluator (a KFP retry) continues
where the last one stopped, and a second run over a finished training run
evaluates nothing: it says so, naming the records, and how to evaluate again
(a new `eval_name` starts new records; nothing recorded is deleted). With an
`eval_identity` (what defines the evaluation: task, eval data, config...) each
record stores it, and a run whose identity differs from the records' is refused
before any work: metrics of two different evaluations never share records or a
best checkpoint.
"""

import contextlib
import dataclasses
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

from absl import logging
import tensorflow as tf

from tfpipe import checks
from tfpipe.controller_core import checkpoint_watcher
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import runner

if TYPE_CHECKING:  # The controller imports this module.
    from tfpipe.controller_core.controller import Controller


@dataclasses.dataclass
class ContinuousEvalStats:
    """What one continuous-evaluation run did.

    Attributes:
        evaluated: Steps evaluated (and recorded) by this run, in order.
        skipped: Steps whose checkpoint was deleted (e.g. by the trainer's
            `max_to_keep`) after it was seen and before it could be restored.
        already_recorded: Steps an earlier run had recorded, not evaluated again.
        last_step_seen: The newest checkpoint step seen.
        stop_reason: Why the loop ended.
        best: The best record at the end, when best tracking is on.
        output: The output of the last evaluation run here (None when none ran).
    """

    evaluated: List[int] = dataclasses.field(default_factory=list)
    skipped: List[int] = dataclasses.field(default_factory=list)
    already_recorded: List[int] = dataclasses.field(default_factory=list)
    last_step_seen: Optional[int] = None
    stop_reason: str = ""
    best: Optional[Dict[str, Any]] = None
    output: Optional[runner.Output] = dataclasses.field(default=None, repr=False)


class IdleTimeoutError(TimeoutError):
    """No new checkpoint came for `idle_timeout` seconds; `stats` says what was done until then."""

    def __init__(self, message: str, stats: ContinuousEvalStats) -> None:
        super().__init__(message)
        self.stats = stats


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A short, stable hash of an eval identity (its canonical JSON)."""
    canonical = json.dumps(eval_records.json_safe(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ContinuousEvaluator:
    """Evaluates the checkpoints of a controller's checkpoint directory as they appear.

    Each evaluated checkpoint gets a record in `<directory>/eval/<eval_name>/records/`
    (see `eval_records`), so no checkpoint is evaluated twice, across restarts too.
    """

    def __init__(
        self,
        controller: "Controller",
        *,
        policy: Union[str, int] = "all",
        eval_name: str = "validation",
        target_step: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        poll_interval: float = 1.0,
        best_metric: Optional[str] = None,
        best_mode: str = "higher",
        eval_identity: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Initializes the evaluator and checks its arguments.

        Args:
            controller: A `Controller` with an evaluator and a checkpoint manager.
            policy: `all` (every checkpoint in step order, oldest unevaluated
                first), `latest` (only the newest, Orbit's behaviour), or a step
                stride N (a checkpoint each time a multiple of N is crossed).
                Training's final checkpoint is evaluated under every policy.
            eval_name: Names this evaluator's records (`eval/<eval_name>/`).
            target_step: Stop once a checkpoint at or past this step is evaluated.
            idle_timeout: Seconds without a new checkpoint after which `run()`
                raises `IdleTimeoutError`. None waits forever.
            poll_interval: Seconds between directory listings.
            best_metric: Track the best checkpoint by this output metric (nested
                keys as `a/b`) and pin a copy in `eval/<eval_name>/best/`.
            best_mode: `higher` or `lower`: which metric values are better.
            eval_identity: What defines this evaluation (e.g. the task and its
                config); JSON-serialisable. Stored in each record; records made
                with another identity make `run()` refuse to start.

        Raises:
            ValueError: If the controller has no evaluator or checkpoint manager,
                or an argument is invalid, naming it.
        """
        controller._require("evaluator", for_method="evaluate_continuously")
        controller._require("checkpoint_manager", for_method="evaluate_continuously")
        self._policy = checks.check_policy("policy", policy)
        checks.check_seconds("idle_timeout", idle_timeout)
        checks.check_seconds("poll_interval", poll_interval, optional=False)
        if target_step is not None:
            checks.check_positive_int("target_step", target_step)
        checks.check_eval_name("eval_name", eval_name)
        if eval_identity is not None and not isinstance(eval_identity, Mapping):
            raise ValueError(f"`eval_identity` must be a mapping of JSON values or None, got "
                             f"{type(eval_identity).__name__}.")
        self._controller = controller
        self._manager = controller.checkpoint_manager
        self._eval_name = eval_name
        self._target_step = target_step
        self._idle_timeout = idle_timeout
        self._poll_interval = poll_interval
        self.directory = eval_records.eval_dir(self._manager.directory, eval_name)
        self.records = eval_records.EvalRecords(self.directory)
        self._best = eval_records.BestCheckpoint(self.directory, best_metric, best_mode) if best_metric else None
        self._identity = self._fingerprint = None
        if eval_identity is not None:
            self._identity = eval_records.json_safe(dict(eval_identity))
            try:
                self._fingerprint = fingerprint(self._identity)
            except (TypeError, ValueError) as e:
                raise ValueError(f"`eval_identity` must hold JSON values only: {e}") from None

    def run(
        self,
        steps: int = -1,
        timeout: Optional[Union[int, float]] = None,
        timeout_fn: Optional[Callable[[], bool]] = None,
    ) -> ContinuousEvalStats:
        """Evaluates checkpoints until training is over.

        Args:
            steps: Steps per evaluation; -1 for the whole evaluation dataset.
            timeout: Orbit's timeout: seconds without a new checkpoint before
                calling `timeout_fn` (or stopping, without one). None: no timeout.
            timeout_fn: Called after `timeout`; True stops the loop.

        Returns:
            What this run evaluated and skipped, why it stopped, and the best record.

        Raises:
            ValueError: If `timeout` is invalid, or the records were made with
                another `eval_identity`.
            IdleTimeoutError: If `idle_timeout` passed with no new checkpoint.
        """
        checks.check_seconds("timeout", timeout)
        recorded = self.records.steps()
        self._check_identity(recorded)
        if self._best is not None:
            self._best.repair(self.records)
        checkpoints = checkpoint_watcher.CheckpointIterator(
            self._manager.directory, name=checkpoint_watcher.checkpoint_name(self._manager), recorded=recorded,
            policy=self._policy, target_step=self._target_step, timeout=timeout, timeout_fn=timeout_fn,
            idle_timeout=self._idle_timeout, poll_interval=self._poll_interval,
        )
        stats = ContinuousEvalStats(already_recorded=list(recorded))
        print(f" eval | watching {checkpoints.directory} | policy: {self._policy} | records: "
              f"{self.records.records_dir} ({len(recorded)} already evaluated)", flush=True)
        for step, path in checkpoints:
            output = self._evaluate_checkpoint(step, path, steps)
            if output is None:
                checkpoints.skip_deleted(step, path)
                continue
            checkpoints.mark_recorded(step)
            stats.evaluated.append(step)
            stats.output = output
        stats.skipped = checkpoints.skipped
        stats.last_step_seen = checkpoints.last_step_seen
        stats.stop_reason = checkpoints.stop_reason
        stats.best = self._best.record if self._best is not None else None
        self._report(stats, failed=checkpoints.failure is not None)
        if checkpoints.failure is not None:
            raise IdleTimeoutError(checkpoints.failure, stats)
        return stats

    def _evaluate_checkpoint(self, step: int, path: str, steps: int) -> Optional[runner.Output]:
        """Restores and evaluates one checkpoint; None when it vanished first.

        With best tracking, the checkpoint is staged (copied) first and evaluated from the copy, so the best
        one can still be pinned when the trainer's `max_to_keep` deletes the original meanwhile.
        """
        staged = path
        try:
            if self._best is not None:
                staged = self._best.stage(path)
            self._controller.restore_checkpoint(staged)
        except (tf.errors.NotFoundError, tf.errors.DataLossError):
            if tf.io.gfile.exists(f"{path}.index"):
                raise
            return None
        start = time.monotonic()

        def record(raw_output: runner.Output) -> None:
            extra: Dict[str, Any] = {"duration": time.monotonic() - start,
                                     "checkpoint_fingerprint": eval_records.checkpoint_fingerprint(staged)}
            if self._identity is not None:
                extra.update(eval_identity=self._identity, eval_fingerprint=self._fingerprint)
            written = self.records.write(step, path, raw_output, **extra)
            if self._best is not None:
                self._best.consider(written, staged)

        with _first_eval_action(self._controller, record):
            return self._controller.evaluate(steps)

    def _check_identity(self, recorded: List[int]) -> None:
        """Refuses to add records of this evaluation to records of another one."""
        if self._fingerprint is None or not recorded:
            return
        latest = self.records.read(recorded[-1]) or {}
        theirs = latest.get("eval_fingerprint")
        if theirs is None or theirs == self._fingerprint:
            return
        stored = latest.get("eval_identity") or {}
        changed = sorted(k for k in set(stored) | set(self._identity) if stored.get(k) != self._identity.get(k))
        raise ValueError(
            f"`eval_identity` differs from the one the records of evaluator {self._eval_name!r} were made with "
            f"({self.records.records_dir}, step {recorded[-1]}): changed {changed}; recorded "
            f"{json.dumps({k: stored.get(k) for k in changed}, sort_keys=True)}, now "
            f"{json.dumps({k: self._identity.get(k) for k in changed}, sort_keys=True)}. Records are never "
            "rewritten: pass a new `eval_name` to evaluate into new records, or the recorded identity to "
            "continue these. Nothing was evaluated."
        )

    def _report(self, stats: ContinuousEvalStats, failed: bool) -> None:
        best = f" | best step: {stats.best['step']}" if stats.best else ""
        print(f" eval | done | {stats.stop_reason} | evaluated: {len(stats.evaluated)} | skipped (deleted): "
              f"{len(stats.skipped)} | already recorded: {len(stats.already_recorded)}{best}", flush=True)
        if stats.evaluated or not stats.already_recorded or failed:
            return
        steps = stats.already_recorded
        shown = ", ".join(map(str, steps[:10])) + (f", ... ({len(steps)} in all)" if len(steps) > 10 else "")
        message = (
            f"Evaluated nothing: every checkpoint to evaluate already has a record of evaluator "
            f"{self._eval_name!r} in {self.records.records_dir} (steps {shown}), written by an earlier run; "
            "records are never rewritten. To evaluate these checkpoints again, pass a new `eval_name` (its "
            "records start empty; the old ones stay), or evaluate one checkpoint with `Controller.evaluate()` "
            "(Model Garden: mode=eval), which keeps no records."
        )
        logging.warning(message)
        print(f" eval | WARNING | {message}", flush=True)


@contextlib.contextmanager
def _first_eval_action(controller: "Controller", action: Callable[[runner.Output], None]) -> Iterator[None]:
    """Runs `action` before the controller's own eval actions, for the duration of the block."""
    actions = controller.eval_actions
    controller.eval_actions = (action, *actions)
    try:
        yield
    finally:
        controller.eval_actions = actions
