"""Runs :class:`~tests.support.gcs_proxy.GcsProxy` in a child process.

The proxy must not share a process with TensorFlow gs:// calls: some of them hold the GIL during I/O, which would
starve proxy threads and hang the call (see :mod:`tests.support.gcs_proxy`). :class:`GcsProxyProcess` has the same
surface as ``GcsProxy`` (start/stop, context manager, ``port``, ``url``, ``requests_served``, ``requests_refused``)
and runs ``gcs_proxy.py`` as a script with the current interpreter. The child exits when its standard input closes,
so it also goes away when the test process dies.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support import gcs_proxy
from tests.support.gcs_proxy import FaultPolicy, ProxyCounters


class GcsProxyProcess:
    """A :class:`~tests.support.gcs_proxy.GcsProxy` running in a child Python process."""

    def __init__(
        self,
        upstream_port: int,
        cert_file: Path,
        key_file: Path,
        workdir: Path,
        *,
        fault_policy: FaultPolicy | None = None,
        terminate_on_exit: Sequence[int] = (),
        startup_timeout_s: float = 15.0,
        io_timeout_s: float = 30.0,
    ) -> None:
        """Prepares the child; nothing runs until :meth:`start`.

        Args:
            upstream_port: Port of the plain-HTTP emulator on 127.0.0.1.
            cert_file: PEM certificate chain presented for the GCS host names.
            key_file: PEM private key of that certificate.
            workdir: Existing directory for the counter file and the proxy log (``gcs-proxy.log``).
            fault_policy: Hook passed to the proxy; it is pickled into the child, so it must be picklable (a
                module-level function or an instance of a module-level class).
            terminate_on_exit: PIDs the child sends SIGTERM when it exits, also when this process dies without
                calling :meth:`stop` (the child's standard input then closes).
            startup_timeout_s: Upper bound on waiting for the child to report its port.
            io_timeout_s: Timeout of every socket operation in the proxy.
        """
        self._args = [
            "--upstream-port", str(upstream_port),
            "--cert", str(cert_file),
            "--key", str(key_file),
            "--counters", str(workdir / "gcs-proxy.counters"),
            "--io-timeout-s", str(io_timeout_s),
            *(arg for pid in terminate_on_exit for arg in ("--terminate-on-exit", str(pid))),
        ]  # fmt: skip
        self._workdir = workdir
        self._fault_policy = fault_policy
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._counters: ProxyCounters | None = None
        self._port: int | None = None

    @property
    def log_path(self) -> Path:
        """The child's log file (its standard error)."""
        return self._workdir / "gcs-proxy.log"

    def start(self) -> GcsProxyProcess:
        """Starts the child and waits (bounded) until it reports its listening port.

        Returns:
            This object.

        Raises:
            RuntimeError: If already started, or the child exits or stays silent past the startup timeout.
        """
        if self._process is not None:
            raise RuntimeError(f"GcsProxyProcess already running on port {self._port}")
        self._counters = ProxyCounters.create_file(self._workdir / "gcs-proxy.counters")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, gcs_proxy.__file__, *self._args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        try:
            assert self._process.stdin is not None
            gcs_proxy.write_fault_policy(self._process.stdin, self._fault_policy)
            self._port = self._read_port()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        deadline = time.monotonic() + self._startup_timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([stdout], [], [], min(remaining, 0.5))
            if readable:
                line = stdout.readline().strip()
                stdout.close()
                if line.isdigit():
                    return int(line)
                break
            if self._process.poll() is not None:
                break
        raise RuntimeError(
            f"gcs proxy child (pid {self._process.pid}, exit status {self._process.poll()}) reported no port "
            f"within {self._startup_timeout_s} s; log {self.log_path}: {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError as error:
            return f"<cannot read: {error}>"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Closes the child's standard input, waits (bounded) for it to exit, then kills it. Safe to call twice.

        Args:
            timeout_s: How long to wait for a graceful exit before SIGKILL.
        """
        if self._process is not None:
            if self._process.stdin is not None:
                try:
                    self._process.stdin.close()
                except OSError:
                    pass
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout_s)
            self._process = None
        if self._counters is not None:
            self._counters.close()
            self._counters = None
        self._port = None

    def __enter__(self) -> GcsProxyProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1)."""
        if self._port is None:
            raise RuntimeError("GcsProxyProcess is not started")
        return self._port

    @property
    def url(self) -> str:
        """The proxy URL for ``https_proxy``/``http_proxy``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests_served(self) -> int:
        """Complete requests the proxy accepted and answered (read from the shared counter file)."""
        return self._counters.served if self._counters is not None else 0

    @property
    def requests_refused(self) -> int:
        """Requests the proxy refused (non-GCS targets)."""
        return self._counters.refused if self._counters is not None else 0
