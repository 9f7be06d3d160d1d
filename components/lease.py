"""One trainer per run directory: an exclusive writer lease on `model_dir`.

A KFP retry can start while the pod it replaces is still running, and two trainers
on one run directory would overwrite each other's checkpoints. The train step
therefore holds a lease for as long as it writes:

* on Cloud Storage (`gs://`, and `/gcs/` mounts, which are the same objects) the
  lease is the object `<model_dir>/.tfpipe-writer.json`, created only if absent
  and renewed only if unchanged (google-cloud-storage's `if_generation_match`), with
  an expiry, so that the lease of a pod that was killed lapses `ttl` seconds later;
* on a local disk it is an exclusive `flock` on `<model_dir>/.tfpipe-writer.lock`,
  which the kernel releases when the process dies, however it dies.

A second trainer waits for the lease (a preempted pod's lease lapses) and then
fails, naming the holder, without touching a checkpoint. A holder that lost its lease
(it stalled past the expiry and another trainer took over) stops before its next save.
"""

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional

from absl import logging

from tfpipe.components import gcs

LEASE_OBJECT = ".tfpipe-writer.json"
LOCK_FILE = ".tfpipe-writer.lock"
# Long enough to ride out a slow renewal (each is one small request, retried by the client library), short enough
# that a preempted pod's retry starts training within a few minutes. `$TFPIPE_WRITER_LEASE_TTL_S` overrides it.
TTL_ENV = "TFPIPE_WRITER_LEASE_TTL_S"
DEFAULT_TTL_S = 120.0
RENEW_EVERY = 1 / 4  # Of the ttl: three renewals may fail before the lease lapses.
POLL_S = 2.0


class LeaseHeldError(RuntimeError):
    """Another trainer holds the run directory's writer lease."""


class LeaseLostError(RuntimeError):
    """This trainer's lease lapsed and another trainer took the run directory over."""


def _holder() -> Dict[str, Any]:
    return {"holder": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}


def holder(model_dir: str, *, clock: Callable[[], float] = time.time) -> Optional[Dict[str, Any]]:
    """Who holds the writer lease of `model_dir` now (a trainer is running there), or None.

    For a reader (continuous evaluation deciding whether training has started): on Cloud Storage it reads the lease
    object (a lapsed lease is no holder); locally it tests the `flock` with a shared, non-blocking lock that it
    drops at once.
    """
    model_dir = model_dir.rstrip("/")
    location = gcs.gcs_location(model_dir)
    if location is not None:
        from google.api_core import exceptions

        bucket, prefix = location
        try:
            held = json.loads(gcs.blob(bucket, f"{prefix}/{LEASE_OBJECT}" if prefix else LEASE_OBJECT)
                              .download_as_text())
        except exceptions.NotFound:
            return None
        return held if float(held.get("expires", 0)) > clock() else None
    try:
        fd = os.open(os.path.join(model_dir, LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        with os.fdopen(os.dup(fd)) as f:
            text = f.read()
        return json.loads(text) if text.strip() else {"holder": "unknown"}
    finally:
        os.close(fd)  # Drops the shared lock, if it was taken.
    return None


class WriterLease:
    """An exclusive claim on a run directory for one trainer; use as a context manager.

    Args:
        model_dir: The run directory.
        ttl: Seconds a Cloud Storage lease lasts without renewal (renewed in the background every ttl/4);
            default `$TFPIPE_WRITER_LEASE_TTL_S` or 120.
        wait: Seconds to wait for a lease another trainer holds before failing; default ttl + 30.
        clock: Returns the current time in seconds (tests inject one).
    """

    def __init__(self, model_dir: str, *, ttl: Optional[float] = None, wait: Optional[float] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.model_dir = model_dir.rstrip("/")
        self.ttl = ttl if ttl is not None else float(os.environ.get(TTL_ENV, DEFAULT_TTL_S))
        self.wait = self.ttl + 30.0 if wait is None else wait
        self._clock = clock
        self._me = _holder()
        self._gcs = gcs.gcs_location(self.model_dir)
        self._generation: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    # ---------------------------------------------------------------- public

    def acquire(self) -> "WriterLease":
        """Takes the lease, waiting up to `wait` seconds for another holder's to be released or lapse.

        Raises:
            LeaseHeldError: If another trainer still holds it after `wait` seconds.
        """
        deadline = time.monotonic() + self.wait
        while True:
            other = self._try_acquire()
            if other is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"Another trainer holds the run directory {self.model_dir}: {json.dumps(other, sort_keys=True)}. "
                    f"Waited {self.wait:.0f} s; nothing was written. Two trainers must not share a model_dir; "
                    "a retry of a preempted step gets the lease once the old one lapses."
                )
            print(f"train | waiting for the writer lease of {self.model_dir}, held by "
                  f"{other.get('host')} (pid {other.get('pid')})", flush=True)
            time.sleep(min(POLL_S, max(0.1, deadline - time.monotonic())))
        if self._gcs is not None:
            self._renewer = threading.Thread(target=self._renew_loop, name="tfpipe-lease", daemon=True)
            self._renewer.start()
        return self

    def check(self, output: Any = None) -> None:
        """Raises `LeaseLostError` if the lease was lost; a train action (runs before each save)."""
        del output
        if self._lost.is_set():
            raise LeaseLostError(
                f"The writer lease of {self.model_dir} lapsed and another trainer took it over; stopping before "
                "the next checkpoint so that its checkpoints are not overwritten."
            )

    def release(self) -> None:
        """Gives the lease up (a lease that was lost is left to its new holder)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        if self._gcs is not None and self._generation is not None and not self._lost.is_set():
            from google.api_core import exceptions

            try:
                self._blob().delete(if_generation_match=self._generation)
            except (exceptions.NotFound, exceptions.PreconditionFailed):
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # Releases the flock.
            self._lock_fd = None

    def __enter__(self) -> "WriterLease":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------- internals

    def _try_acquire(self) -> Optional[Dict[str, Any]]:
        """Takes the lease if free (or lapsed); returns None on success, else the holder's record."""
        return self._try_gcs() if self._gcs is not None else self._try_local()

    def _try_local(self) -> Optional[Dict[str, Any]]:
        os.makedirs(self.model_dir, exist_ok=True)
        path = os.path.join(self.model_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(os.dup(fd)) as f:
                text = f.read()
            os.close(fd)
            return json.loads(text) if text.strip() else {"holder": "unknown"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**self._me, "since": self._clock()}).encode(), 0)
        self._lock_fd = fd
        return None

    def _blob(self) -> Any:
        bucket, prefix = self._gcs
        return gcs.blob(bucket, f"{prefix}/{LEASE_OBJECT}" if prefix else LEASE_OBJECT)

    def _record(self) -> str:
        return json.dumps({**self._me, "expires": self._clock() + self.ttl})

    def _try_gcs(self) -> Optional[Dict[str, Any]]:
        from google.api_core import exceptions

        blob = self._blob()
        try:
            blob.upload_from_string(self._record(), content_type="application/json", if_generation_match=0)
            self._generation = blob.generation
            return None
        except exceptions.PreconditionFailed:
            pass
        try:
            text = blob.download_as_text()
        except exceptions.NotFound:
            return {"holder": "released just now"}  # Try again at once on the next round.
        held = json.loads(text)
        if float(held.get("expires", 0)) > self._clock():
            return held
        try:  # Lapsed: take it over, unless someone else does first.
            blob.upload_from_string(self._record(), content_type="application/json",
                                    if_generation_match=blob.generation)
        except exceptions.PreconditionFailed:
            return held
        logging.warning("Took over the lapsed writer lease of %s from %s.", self.model_dir, held)
        print(f"train | took over the lapsed writer lease of {self.model_dir} from {held.get('host')}", flush=True)
        self._generation = blob.generation
        return None

    def renew(self) -> bool:
        """Extends a Cloud Storage lease once (the background thread calls it every ttl/4).

        Returns:
            Whether this process still holds the lease; False (and `check` raises from now on) when another
            trainer took it over.
        """
        from google.api_core import exceptions

        blob = self._blob()
        try:
            blob.upload_from_string(self._record(), content_type="application/json",
                                    if_generation_match=self._generation)
        except exceptions.PreconditionFailed:
            self._lost.set()
            return False
        self._generation = blob.generation
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl * RENEW_EVERY):
            try:
                if not self.renew():
                    return
            except Exception as e:  # A transient fault: the next renewal may succeed before the lease lapses.
                logging.warning("Renewing the writer lease of %s failed: %s", self.model_dir, e)
