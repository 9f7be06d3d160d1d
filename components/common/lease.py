"""One trainer per run directory: an exclusive writer lease on `model_dir`.

A KFP retry can start while the pod it replaces is still running, and two trainers
on one run directory would overwrite each other's checkpoints. The train step
therefore takes a lease before it compares or writes anything, and holds it for as
long as it writes:

* on Cloud Storage (`gs://`, and `/gcs/` mounts, which are the same objects) the
  lease is the object `<model_dir>/.tfpipe-writer.json`, created only if absent and
  renewed only if unchanged (google-cloud-storage's `if_generation_match`). Time is
  the server's: a lease lapses when the server's clock (the `updated` time of a probe
  object the contender writes, `.tfpipe-writer.clock`) is more than the holder's `ttl`
  past the lease object's own `updated` time, so no local clock, however skewed,
  decides. A pod that was killed loses it `ttl` seconds after its last renewal.
* on a local disk it is an exclusive `flock` on the run directory itself, which the
  kernel releases when the process dies, however it dies; deleting files in the
  directory (`.tfpipe-writer.lock`, which only says who holds it) changes nothing.
  Where a filesystem cannot lock a directory (NFS), the lock is on
  `.tfpipe-writer.lock`, and its holder checks that the file is still the one it
  locked.

A second trainer waits for the lease (a preempted pod's lease lapses; by default
the ttl and 30 s, `$TFPIPE_WRITER_LEASE_WAIT_S` sets it) and then fails, naming the
holder, without touching a checkpoint. The holder's saves are fenced
(`fenced_saves`): each checks the lease with the server (`WriterLease.fence`, a
write of the lease object on the generation it holds, which also extends it by
`ttl`) before it writes, after, and on Cloud Storage before it publishes what it
wrote; a holder that lost its lease stops with `LeaseLostError`. `ttl` comes from
`$TFPIPE_WRITER_LEASE_TTL_S` and the wait from `$TFPIPE_WRITER_LEASE_WAIT_S`, both
checked before any work (`ttl_from_env`, `wait_from_env`).
"""

import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, Optional

from absl import logging

from tfpipe import checks
from tfpipe.components.common import gcs

LEASE_OBJECT = ".tfpipe-writer.json"
CLOCK_OBJECT = ".tfpipe-writer.clock"
LOCK_FILE = ".tfpipe-writer.lock"
# Long enough to ride out a slow renewal (each is one small request, retried by the client library), short enough
# that a preempted pod's retry starts training within a few minutes. `$TFPIPE_WRITER_LEASE_TTL_S` overrides it.
TTL_ENV = "TFPIPE_WRITER_LEASE_TTL_S"
DEFAULT_TTL_S = 120.0
MIN_TTL_S, MAX_TTL_S = 1.0, 86400.0
# How long a trainer waits for a lease another holds. By default the ttl and a grace: a preempted pod's lease lapses
# within the ttl, so its retry gets the lease. `$TFPIPE_WRITER_LEASE_WAIT_S` overrides it (0: fail at once).
WAIT_ENV = "TFPIPE_WRITER_LEASE_WAIT_S"
WAIT_GRACE_S = 30.0
MAX_WAIT_S = 86400.0
RENEW_EVERY = 1 / 4  # Of the ttl: three renewals may fail before the lease lapses.
POLL_S = 2.0


class LeaseHeldError(RuntimeError):
    """Another trainer holds the run directory's writer lease."""


class LeaseLostError(RuntimeError):
    """This trainer's lease lapsed or was taken away, and another trainer may write the run directory."""


def _check_seconds(name: str, value: Any, low: float, high: float, meaning: str) -> float:
    """Checks a number of seconds from `low` to `high`; `meaning` says what it is in the error."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not low <= seconds <= high:  # NaN fails every comparison.
        raise checks.InputError(
            f"`{name}` ({checks.shown(value)}) must be a number of seconds from {low:g} to {high:g} ({meaning}).")
    return seconds


def check_ttl(name: str, value: Any) -> float:
    """Checks a lease ttl: a number of seconds from `MIN_TTL_S` to `MAX_TTL_S`.

    Raises:
        checks.InputError: Naming `name`, the value and the accepted range.
    """
    return _check_seconds(name, value, MIN_TTL_S, MAX_TTL_S,
                          f"the writer lease's time to live; default {DEFAULT_TTL_S:g}")


def check_wait(name: str, value: Any) -> float:
    """Checks how long to wait for a held lease: a number of seconds from 0 to `MAX_WAIT_S`.

    Raises:
        checks.InputError: Naming `name`, the value and the accepted range.
    """
    return _check_seconds(name, value, 0.0, MAX_WAIT_S,
                          f"how long a trainer waits for the writer lease another holds; default the ttl + "
                          f"{WAIT_GRACE_S:g}")


def ttl_from_env() -> float:
    """The lease ttl: `$TFPIPE_WRITER_LEASE_TTL_S` (checked, see `check_ttl`), or `DEFAULT_TTL_S`."""
    value = os.environ.get(TTL_ENV)
    return DEFAULT_TTL_S if value is None else check_ttl(f"${TTL_ENV}", value)


def wait_from_env(ttl: float) -> float:
    """The wait for a held lease: `$TFPIPE_WRITER_LEASE_WAIT_S` (checked, see `check_wait`), or `ttl` + 30 s."""
    value = os.environ.get(WAIT_ENV)
    return ttl + WAIT_GRACE_S if value is None else check_wait(f"${WAIT_ENV}", value)


def _holder() -> Dict[str, Any]:
    return {"holder": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}


def holder(model_dir: str) -> Optional[Dict[str, Any]]:
    """Who holds the writer lease of `model_dir` now (a trainer is running there), or None.

    For a reader (continuous evaluation deciding whether training has started), by the writers' own rules: on Cloud
    Storage the lease object, lapsed by the server's clock (`_server_now`) as `WriterLease` judges it; locally a
    shared, non-blocking `flock` on the run directory (or, where the disk cannot lock a directory, its lock file),
    dropped at once.
    """
    model_dir = model_dir.rstrip("/")
    location = gcs.gcs_location(model_dir)
    if location is not None:
        from google.api_core import exceptions

        blob = _blob(location, LEASE_OBJECT)
        try:
            blob.reload()
            held = json.loads(blob.download_as_text(if_generation_match=blob.generation))
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return None
        except ValueError:
            held = {"holder": "unknown (unreadable lease object)"}
        ttl = held.get("ttl") if isinstance(held.get("ttl"), (int, float)) else DEFAULT_TTL_S
        return held if _server_now(location) - blob.updated.timestamp() <= ttl else None
    if not os.path.isdir(model_dir):
        return None
    for path, flags in ((model_dir, os.O_RDONLY | os.O_DIRECTORY), (os.path.join(model_dir, LOCK_FILE), os.O_RDONLY)):
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # Nobody holds it exclusively (the shared lock drops with the descriptor).
        except BlockingIOError:
            return _read_holder(model_dir)
        except OSError as e:  # A disk that cannot lock a directory (NFS): its writers lock the lock file.
            if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        finally:
            os.close(fd)
    return None


def _blob(location: Any, name: str) -> Any:
    bucket, prefix = location
    return gcs.blob(bucket, f"{prefix}/{name}" if prefix else name)


def _server_now(location: Any) -> float:
    """The Cloud Storage server's clock now: the `updated` time of a probe object written for it."""
    probe = _blob(location, CLOCK_OBJECT)
    probe.upload_from_string(b"", content_type="application/octet-stream")
    return probe.updated.timestamp()


def _read_holder(model_dir: str) -> Dict[str, Any]:
    """The holder's description in the local lock file (for messages)."""
    try:
        with open(os.path.join(model_dir, LOCK_FILE)) as f:
            text = f.read()
        return json.loads(text) if text.strip() else {"holder": "unknown"}
    except (FileNotFoundError, ValueError):
        return {"holder": f"unknown ({LOCK_FILE} is missing or unreadable)"}


class WriterLease:
    """An exclusive claim on a run directory for one trainer; use as a context manager.

    Args:
        model_dir: The run directory.
        ttl: Seconds a Cloud Storage lease lasts without renewal (renewed in the background every ttl/4);
            default `ttl_from_env()`.
        wait: Seconds to wait for a lease another trainer holds before failing; default `wait_from_env(ttl)`.

    Raises:
        checks.InputError: If `ttl` or `wait` (or `$TFPIPE_WRITER_LEASE_TTL_S`, `$TFPIPE_WRITER_LEASE_WAIT_S`) is
            not a valid number of seconds.
    """

    def __init__(self, model_dir: str, *, ttl: Optional[float] = None, wait: Optional[float] = None) -> None:
        self.model_dir = model_dir.rstrip("/")
        self.ttl = ttl_from_env() if ttl is None else check_ttl("ttl", ttl)
        self.wait = wait_from_env(self.ttl) if wait is None else check_wait("wait", wait)
        self._me = _holder()
        self._gcs = gcs.gcs_location(self.model_dir)
        self._generation: Optional[int] = None
        self._fd: Optional[int] = None  # The locked directory (or lock file) on a local disk.
        self._locked_dir = False
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self._renewing = threading.Lock()  # One renewal at a time: each needs the generation the last one made.

    # ---------------------------------------------------------------- public

    @property
    def holder_id(self) -> str:
        """This holder's unique id (a fresh one per lease object, so per process)."""
        return self._me["holder"]

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
        """Raises `LeaseLostError` if the lease is known to be lost; a train action (runs after each loop).

        Cheap: a flag the renewal thread sets on Cloud Storage, a `stat` on a local disk. `fence` asks the server.
        """
        del output
        if not self._lost.is_set() and self._gcs is None:
            self._check_local()
        self._raise_if_lost()

    def fence(self) -> None:
        """Raises `LeaseLostError` unless this process holds the lease now, by the server's word.

        On Cloud Storage it renews the lease on the generation it holds: a lease taken over meanwhile fails the
        precondition, and one still held cannot be taken over for another `ttl` (server time).
        """
        if not self._lost.is_set():
            if self._gcs is not None:
                self.renew()
            else:
                self._check_local()
        self._raise_if_lost()

    def _raise_if_lost(self) -> None:
        if self._lost.is_set():
            raise LeaseLostError(
                f"The writer lease of {self.model_dir} was lost (it lapsed and another trainer took it over, or "
                "the run directory or its lock was replaced); stopping before writing more, so that another "
                "trainer's checkpoints are not overwritten."
            )

    def release(self) -> None:
        """Gives the lease up (a lease that was lost is left to its new holder)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        if self._gcs is not None and self._generation is not None and not self._lost.is_set():
            from google.api_core import exceptions

            try:
                self._blob(LEASE_OBJECT).delete(if_generation_match=self._generation)
            except (exceptions.NotFound, exceptions.PreconditionFailed):
                pass
        if self._fd is not None:
            os.close(self._fd)  # Releases the flock.
            self._fd = None

    def __enter__(self) -> "WriterLease":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def renew(self) -> bool:
        """Extends a Cloud Storage lease once (the background thread calls it every ttl/4; `fence` too).

        Returns:
            Whether this process still holds the lease; False (and `check` raises from now on) when another
            trainer took it over.
        """
        from google.api_core import exceptions

        with self._renewing:
            if self._lost.is_set():
                return False
            blob = self._blob(LEASE_OBJECT)
            try:
                blob.upload_from_string(self._record(), content_type="application/json",
                                        if_generation_match=self._generation)
            except exceptions.PreconditionFailed:
                if not self._still_mine(blob):
                    self._lost.set()
                    return False
            self._generation = blob.generation
            return True

    def _still_mine(self, blob: Any) -> bool:
        """Whether the lease object names this holder (a retried renewal whose first reply was lost did renew)."""
        from google.api_core import exceptions

        try:
            blob.reload()
            mine = json.loads(blob.download_as_text(if_generation_match=blob.generation)).get("holder")
        except (exceptions.NotFound, exceptions.PreconditionFailed, ValueError):
            return False
        return mine == self._me["holder"]

    # ------------------------------------------------------------- internals

    def _try_acquire(self) -> Optional[Dict[str, Any]]:
        """Takes the lease if free (or lapsed); returns None on success, else the holder's record."""
        return self._try_gcs() if self._gcs is not None else self._try_local()

    def _lock_path(self) -> str:
        return os.path.join(self.model_dir, LOCK_FILE)

    def _try_local(self) -> Optional[Dict[str, Any]]:
        os.makedirs(self.model_dir, exist_ok=True)
        fd = os.open(self.model_dir, os.O_RDONLY | os.O_DIRECTORY)
        locked_dir = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return self._read_holder()
        except OSError as e:  # NFS locks need a file open for writing: lock the lock file instead.
            os.close(fd)
            if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            locked_dir = False
            fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return self._read_holder()
            if not self._same_file(fd, self._lock_path()):  # Deleted or replaced between open and lock.
                os.close(fd)
                return {"holder": "replaced just now"}
        self._fd, self._locked_dir = fd, locked_dir
        self._write_holder()
        return None

    def _same_file(self, fd: int, path: str) -> bool:
        try:
            held, there = os.fstat(fd), os.stat(path)
        except FileNotFoundError:
            return False
        return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)

    def _read_holder(self) -> Dict[str, Any]:
        return _read_holder(self.model_dir)

    def _write_holder(self) -> None:
        """Writes who holds the lease into the lock file (for a waiting trainer's message)."""
        info = json.dumps({**self._me, "since": time.time()})
        if self._locked_dir:
            with open(self._lock_path(), "w") as f:
                f.write(info)
        else:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, info.encode(), 0)

    def _check_local(self) -> None:
        """Sets `_lost` when the locked directory (or lock file) is no longer the one at the path."""
        path = self.model_dir if self._locked_dir else self._lock_path()
        if self._fd is None or not self._same_file(self._fd, path):
            self._lost.set()
        elif self._locked_dir and not os.path.exists(self._lock_path()):
            self._write_holder()  # Deleted by someone: only the holder's description was lost; say it again.

    def _blob(self, name: str) -> Any:
        return _blob(self._gcs, name)

    def _record(self) -> str:
        return json.dumps({**self._me, "ttl": self.ttl})

    def _server_now(self) -> float:
        return _server_now(self._gcs)

    def _try_gcs(self) -> Optional[Dict[str, Any]]:
        from google.api_core import exceptions

        blob = self._blob(LEASE_OBJECT)
        try:
            blob.upload_from_string(self._record(), content_type="application/json", if_generation_match=0)
            self._generation = blob.generation
            return None
        except exceptions.PreconditionFailed:
            pass
        try:
            blob.reload()  # Its generation and `updated` (the server's time of the holder's last renewal).
            held = json.loads(blob.download_as_text(if_generation_match=blob.generation))
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return {"holder": "released or renewed just now"}  # Try again on the next round.
        except ValueError:
            held = {"holder": "unknown (unreadable lease object)"}
        ttl = float(held.get("ttl", self.ttl)) if isinstance(held.get("ttl"), (int, float)) else self.ttl
        age = self._server_now() - blob.updated.timestamp()
        if age <= ttl:
            return held
        try:  # Lapsed by the server's clock: take it over, unless someone else does (or it is renewed) first.
            blob.upload_from_string(self._record(), content_type="application/json",
                                    if_generation_match=blob.generation)
        except exceptions.PreconditionFailed:
            return held
        logging.warning("Took over the lapsed writer lease of %s from %s (last renewed %.0f s ago).",
                        self.model_dir, held, age)
        print(f"train | took over the lapsed writer lease of {self.model_dir} from {held.get('host')} (last "
              f"renewed {age:.0f} s ago, server time)", flush=True)
        self._generation = blob.generation
        return None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl * RENEW_EVERY):
            try:
                if not self.renew():
                    return
            except Exception as e:  # A transient fault: the next renewal may succeed before the lease lapses.
                logging.warning("Renewing the writer lease of %s failed: %s", self.model_dir, e)
