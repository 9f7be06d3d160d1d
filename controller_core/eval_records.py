"""Durable per-checkpoint evaluation records, and the pinned best checkpoint.

Layout under an evaluator's directory (`<model_dir>/eval/<eval_name>/`)::

    records/000000000100.json   one record per evaluated checkpoint, named by step
    best/ckpt-100.index ...     a copy of the best checkpoint so far
    best/best.json              the best record, with the copy's path; written last

A record holds at least `step`, `checkpoint`, `checkpoint_fingerprint` (what was
judged, by content) and `metrics` (the evaluator's output, JSON-safe; NaN and
infinities are kept as such). Records are written
atomically and never rewritten: a restarted evaluator reads them to know what is
done. The best copy is committed by writing `best.json` after every file of the
copy is complete, so `max_to_keep` on the trainer's side can never take the best
checkpoint away, and a crash mid-copy leaves the previous best intact.
"""

import hashlib
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfpipe import checks
from tfpipe.controller_core import run_dir
from tfpipe.controller_core.actions.new_best_metric import NewBestMetric, lookup_metric

RECORDS = "records"
BEST = "best"
BEST_RECORD = "best.json"


def eval_dir(model_dir: str, eval_name: str) -> str:
    """The directory of evaluator `eval_name` in a run directory."""
    return f"{model_dir.rstrip('/')}/eval/{eval_name}"


def json_safe(value: Any) -> Any:
    """Converts an output (tensors, NumPy values, nested dicts) to JSON-serialisable Python values."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if tf.is_tensor(value) or isinstance(value, tf.Variable):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class EvalRecords:
    """The records of one evaluator: which checkpoints are evaluated, with what results."""

    def __init__(self, directory: str) -> None:
        """Initializes the store.

        Args:
            directory: The evaluator's directory (`eval_dir(model_dir, eval_name)`).
        """
        self.directory = directory.rstrip("/")
        self.records_dir = f"{self.directory}/{RECORDS}"

    def path(self, step: int) -> str:
        """The record file of `step` (zero-padded so names sort by step)."""
        return f"{self.records_dir}/{int(step):012d}.json"

    def steps(self) -> List[int]:
        """Steps that have a record, ascending (a fresh listing every call)."""
        if not tf.io.gfile.isdir(self.records_dir):
            return []
        steps = []
        for name in tf.io.gfile.listdir(self.records_dir):
            stem = name.rstrip("/")
            if stem.endswith(".json") and stem[:-5].isdigit():
                steps.append(int(stem[:-5]))
        return sorted(steps)

    def read(self, step: int) -> Optional[Dict[str, Any]]:
        """The record of `step`, or None."""
        return run_dir.read_json(self.path(step))

    def write(self, step: int, checkpoint: str, metrics: Mapping[str, Any], **extra: Any) -> Dict[str, Any]:
        """Writes the record of `step` once; an existing record is kept, never rewritten.

        Args:
            step: The checkpoint's step.
            checkpoint: The checkpoint's path (prefix).
            metrics: The evaluation output.
            **extra: More fields (e.g. `duration`).

        Returns:
            The record as stored (the existing one when `step` was recorded already).
        """
        record = {
            "step": int(step),
            "checkpoint": checkpoint,
            "checkpoint_fingerprint": checkpoint_fingerprint(checkpoint),
            "metrics": json_safe(metrics),
            "time": time.time(),
            **json_safe(extra),
        }
        try:
            run_dir.write_json_atomic(self.path(step), record, overwrite=False)
        except tf.errors.AlreadyExistsError:
            logging.warning("Step %d already has a record in %s; keeping it.", step, self.records_dir)
            return self.read(step) or record
        return record


def checkpoint_fingerprint(checkpoint: str) -> Optional[str]:
    """A content fingerprint of a checkpoint (the SHA-256 of its `.index`, which holds every tensor's checksum).

    A copy of a checkpoint (the pinned best) has the fingerprint of its original; another run's checkpoint with
    the same step has another. None when the checkpoint is gone.
    """
    try:
        with tf.io.gfile.GFile(f"{checkpoint}.index", "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except tf.errors.NotFoundError:
        return None


def is_complete_checkpoint(prefix: str, fingerprint: Optional[str], *, index_only: bool = False) -> bool:
    """Whether `prefix` is a complete checkpoint with the content `fingerprint` names.

    Complete: its `.index` (always written, copied and moved last) is not empty, has the fingerprint when one
    is given, and (unless `index_only`) every data shard it names (`.data-i-of-n`) is present.
    """
    try:
        if tf.io.gfile.stat(f"{prefix}.index").length == 0:
            return False
    except tf.errors.NotFoundError:
        return False
    if fingerprint is not None and checkpoint_fingerprint(prefix) != fingerprint:
        return False
    if index_only:
        return True
    shards = [os.path.basename(f)[len(os.path.basename(prefix)) + len(".data-"):]
              for f in tf.io.gfile.glob(f"{prefix}.data-*")]
    counts = {shard.partition("-of-")[2] for shard in shards}
    if len(counts) != 1 or not next(iter(counts)).isdigit():
        return False
    return sorted(shards) == [f"{i:05d}-of-{int(n):05d}" for n in counts for i in range(int(n))]


def checkpoint_files(checkpoint: str) -> List[str]:
    """The files of a checkpoint prefix: its `.index` and `.data-*` shards."""
    return sorted(tf.io.gfile.glob(f"{checkpoint}.index") + tf.io.gfile.glob(f"{checkpoint}.data-*"))


class BestCheckpoint:
    """Tracks the best evaluated checkpoint by one metric and pins a copy of it, so that it is never lost.

    Every checkpoint is staged before it is restored (`stage`: its files copied to
    `<directory>/best/.candidate/`, `.index` last), so the trainer's `max_to_keep`
    can delete the original while it is evaluated. After its record is written,
    `consider` moves a winning candidate into `best/` and writes `best.json` last,
    and drops a losing one. On start the tracker re-derives the best from the
    records (`repair`): a crash between a record and its pin is completed from the
    staged candidate (or the original, while it exists), and partial copies are
    removed. NaN never wins; ties keep the earlier checkpoint.
    """

    CANDIDATES = ".candidate"

    def __init__(self, directory: str, metric: str, mode: str = "higher") -> None:
        """Initializes the tracker.

        Args:
            directory: The evaluator's directory; the copy goes to `<directory>/best/`.
            metric: The metric's name in the evaluation output; nested keys as `a/b`.
            mode: `higher` or `lower`: which values are better.

        Raises:
            ValueError: If `metric` is empty or `mode` is not `higher`/`lower`.
        """
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"`best_metric` must be a metric name (nested keys as 'a/b'), got {metric!r}.")
        checks.check_choice("best_mode", mode, checks.BEST_MODES)
        self.directory = f"{directory.rstrip('/')}/{BEST}"
        self.candidates = f"{self.directory}/{self.CANDIDATES}"
        self.metric = metric
        self.mode = mode
        self._comparator = NewBestMetric(metric, higher_is_better=(mode == "higher"))
        self._record = read_best_record(directory)
        if self._record is not None:
            self._comparator.commit(self._record["metrics"])

    @property
    def record(self) -> Optional[Dict[str, Any]]:
        """The best record so far (with `best_checkpoint`, the pinned copy), or None."""
        return self._record

    def metric_value(self, metrics: Mapping[str, Any]) -> float:
        """The tracked metric's value in `metrics`."""
        return float(lookup_metric(metrics, self.metric))

    def stage(self, checkpoint: str) -> str:
        """Copies `checkpoint` (data files first, `.index` last) as a candidate; returns the copy's prefix.

        Raises:
            tf.errors.NotFoundError: If the checkpoint vanished before it was copied whole (nothing is left).
        """
        staged = f"{self.candidates}/{os.path.basename(checkpoint)}"
        files = checkpoint_files(checkpoint)
        if not any(f.endswith(".index") for f in files):
            raise tf.errors.NotFoundError(None, None, f"checkpoint {checkpoint} has no .index file")
        tf.io.gfile.makedirs(self.candidates)
        try:
            for f in sorted(files, key=lambda name: name.endswith(".index")):
                tf.io.gfile.copy(f, f"{self.candidates}/{os.path.basename(f)}", overwrite=True)
        except tf.errors.NotFoundError:
            self._drop(staged)
            raise
        return staged

    def consider(self, record: Mapping[str, Any], staged: str) -> bool:
        """Pins the staged copy of `record`'s checkpoint when its metric beats the best so far; drops it if not.

        Args:
            record: The checkpoint's evaluation record (`step`, `checkpoint`, `metrics`), already written.
            staged: Its staged copy (`stage`).

        Returns:
            Whether it became the new best.

        Raises:
            KeyError: If the metric is not in the record's metrics.
        """
        if not self._comparator.test(record["metrics"]):
            self._drop(staged)
            return False
        self._pin(record, staged)
        return True

    def repair(self, records: "EvalRecords") -> None:
        """Makes `best/` agree with the records: the best recorded checkpoint pinned, nothing partial left.

        A record whose pin was cut short (a crash, a full disk) is pinned from a complete copy of the checkpoint
        it judged (its fingerprint), wherever the crash left it: in `best/` (moved, `best.json` not written
        yet), half moved from its staged candidate, staged, or the original while it exists. When no complete
        copy is left anywhere, the best pinned one stays and a warning names the lost step.
        """
        best, comparator = None, NewBestMetric(self.metric, higher_is_better=(self.mode == "higher"))
        for step in records.steps():  # The same choice the live run makes: in step order, strictly better wins.
            record = records.read(step)
            try:
                if record is not None and comparator.test(record["metrics"]):
                    comparator.commit(record["metrics"])
                    best = record
            except KeyError:
                continue
        current = self._record
        if best is not None and (current is None or int(current["step"]) != int(best["step"])):
            self._complete_pin(best, current)
        for leftover in tf.io.gfile.glob(f"{self.candidates}/*"):
            run_dir.remove_if_present(leftover)
        if self._record is not None:
            self._remove_stale_copies(keep=self._record["best_checkpoint"])

    # -------------------------------------------------------------------------------------------------- internals

    def _complete_pin(self, best: Mapping[str, Any], current: Optional[Mapping[str, Any]]) -> None:
        """Pins the recorded best `best` from a complete copy of its checkpoint, wherever one is left."""
        name = os.path.basename(best["checkpoint"])
        fingerprint = best.get("checkpoint_fingerprint")
        pinned, candidate = f"{self.directory}/{name}", f"{self.candidates}/{name}"
        if not is_complete_checkpoint(pinned, fingerprint) and is_complete_checkpoint(candidate, fingerprint,
                                                                                       index_only=True):
            self._move_into_best(candidate)  # A move cut short: its .index (moved last) is still staged.
        if is_complete_checkpoint(pinned, fingerprint):
            where = "its copy in best/"
        elif is_complete_checkpoint(best["checkpoint"], fingerprint):
            where = "the original checkpoint"
            self._move_into_best(self.stage(best["checkpoint"]))
        else:
            logging.warning(
                "The best recorded checkpoint (step %d, fingerprint %s) has no complete copy left (not in %s, "
                "not staged, the original %s is gone or another checkpoint); %s stays pinned.", best["step"],
                fingerprint, self.directory, best["checkpoint"],
                f"step {current['step']}" if current else "nothing")
            return
        print(f" eval | repaired the best checkpoint: step {best['step']} (recorded, not pinned yet), pinned "
              f"from {where}", flush=True)
        self._commit(best, pinned)

    def _pin(self, record: Mapping[str, Any], staged: str) -> None:
        self._commit(record, self._move_into_best(staged))

    def _move_into_best(self, staged: str) -> str:
        """Moves the files of the staged copy `staged` into `best/`, `.index` last; returns the pinned prefix."""
        for f in sorted(checkpoint_files(staged), key=lambda f: f.endswith(".index")):
            tf.io.gfile.rename(f, f"{self.directory}/{os.path.basename(f)}", overwrite=True)
        return f"{self.directory}/{os.path.basename(staged)}"

    def _commit(self, record: Mapping[str, Any], pinned: str) -> None:
        """Writes `best.json` for the complete copy at `pinned`: the pin is committed."""
        best = {
            **dict(record),
            "best_checkpoint": pinned,
            "best_metric": self.metric,
            "best_mode": self.mode,
            "best_value": self.metric_value(record["metrics"]),
        }
        run_dir.write_json_atomic(f"{self.directory}/{BEST_RECORD}", json_safe(best))
        self._comparator.commit(record["metrics"])
        self._record = best
        self._remove_stale_copies(keep=pinned)
        logging.info("New best %s = %s at step %d, pinned at %s.", self.metric, best["best_value"],
                     int(record["step"]), pinned)

    def _drop(self, staged: str) -> None:
        for f in tf.io.gfile.glob(f"{staged}.*"):
            run_dir.remove_if_present(f)

    def _remove_stale_copies(self, keep: str) -> None:
        keep_name = os.path.basename(keep)
        for path in tf.io.gfile.glob(f"{self.directory}/*"):
            name = os.path.basename(path.rstrip("/"))
            if name in (BEST_RECORD, self.CANDIDATES) or name.startswith(f"{keep_name}.") or name.startswith("."):
                continue
            run_dir.remove_if_present(path)


def read_best_record(directory: str) -> Optional[Dict[str, Any]]:
    """The best record of the evaluator at `directory`, or None when there is none yet."""
    return run_dir.read_json(f"{directory.rstrip('/')}/{BEST}/{BEST_RECORD}")


def is_finite_number(value: Any) -> bool:
    """Whether `value` is a real, finite number (what KFP's Metrics accept)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
