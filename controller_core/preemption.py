"""Preemption: turning SIGTERM into "save a checkpoint at this step, then exit for a retry".

GKE and Vertex AI send SIGTERM to a preempted pod and kill it after a grace period
(30 s by default on GKE). `TerminationWatcher` records the signal instead of dying;
the `Controller` checks it at every train-loop boundary, saves a checkpoint at the
current step (waiting for async saves), and raises `Preempted`, a `SystemExit` with
status 143 (128 + SIGTERM): a failure, so KFP's retry policy starts the step again,
and a "retryable" code for a TFJob's `ExitCode` restart policy. The retried step
resumes from that checkpoint. Keep a train loop (`steps_per_loop`) well inside the
grace period.
"""

import functools
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterable, Optional, TypeVar

from absl import logging

F = TypeVar("F", bound=Callable[..., Any])

PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(SystemExit):
    """A termination signal ended the run early; exits with status 143, which asks for a retry."""

    def __init__(self, signum: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


class Preempted(Terminated):
    """Raised after the checkpoint of a preempted run is saved; exits with status 143."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__(signum)
        self.step = step

    def __str__(self) -> str:
        return f"preempted by {signal.Signals(self.signum).name}: checkpoint saved at step {self.step}"


class TerminationWatcher:
    """Records termination signals (SIGTERM by default) so a loop can stop cleanly.

    By default the signal is only recorded, for the training loop to act on at
    its next boundary. With `immediate=True` the handler raises `Terminated`
    at once instead, so `finally` blocks remove temporary files and nothing
    half-written is left: for evaluation and export, whose work is recorded
    atomically at its end and can simply be redone.

    Use as a context manager, or `install()`/`uninstall()`; handlers are only
    installed from the main thread (Python's rule) and the previous ones are restored.
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM,), *, immediate: bool = False) -> None:
        """Initializes the watcher.

        Args:
            signals: The signals that mean "terminate soon".
            immediate: Raise `Terminated` from the handler instead of recording.
        """
        self._immediate = immediate
        self._signals = tuple(signals)
        self._previous: dict = {}
        self._received: Optional[int] = None

    @property
    def requested(self) -> bool:
        """Whether a termination signal arrived."""
        return self._received is not None

    @property
    def signum(self) -> Optional[int]:
        """The signal that arrived, if any."""
        return self._received

    def install(self) -> "TerminationWatcher":
        """Installs the handlers (main thread only; elsewhere this is a logged no-op)."""
        if threading.current_thread() is not threading.main_thread():
            logging.warning("TerminationWatcher: not the main thread; signals will not be caught.")
            return self
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Restores the previous handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        del frame
        self._received = signum
        if self._immediate:
            _announce(f"received {signal.Signals(signum).name}: stopping; completed work is recorded")
            raise Terminated(signum)
        _announce(f"received {signal.Signals(signum).name}: saving a checkpoint at the end of this train loop")

    def __enter__(self) -> "TerminationWatcher":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def _announce(message: str) -> None:
    """Writes a line to stderr from a signal handler, straight to the file descriptor.

    The handler may have interrupted a `print` in the middle of its buffered write (a write blocked on a full pipe
    returns EINTR and runs the handler there): printing again would raise "reentrant call inside BufferedWriter",
    and a line written to stdout's descriptor would land inside the interrupted one. Without a file descriptor
    (captured output) the line is left out.
    """
    try:
        os.write(sys.stderr.fileno(), f"{message}\n".encode())
    except (AttributeError, OSError, ValueError):
        pass


def stop_if_requested(watcher: Optional[TerminationWatcher], step: int, save: Callable[[], None]) -> None:
    """At a train-loop boundary: after a termination signal, saves and raises `Preempted`.

    Args:
        watcher: The watcher to ask; None means no signal handling.
        step: The current global step.
        save: Saves a checkpoint at `step` and waits until it is durable.

    Raises:
        Preempted: If `watcher` has seen a termination signal (after `save()`).
    """
    if watcher is None or not watcher.requested:
        return
    save()
    stop = Preempted(step, watcher.signum)
    print(f"train | step: {step: 6d} | {stop}; exiting with status {stop.code} for a retry to resume", flush=True)
    raise stop


def exits_on_termination(fn: F) -> F:
    """Decorator: runs `fn` under `TerminationWatcher(immediate=True)`.

    For work that is recorded atomically at its end (an evaluation, an export):
    SIGTERM stops it at once, `finally` blocks clean up, and the process exits
    with status 143 for a retry to redo it.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with TerminationWatcher(immediate=True):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
