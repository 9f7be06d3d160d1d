"""Shared pieces of the benchmark runner: statistics, the worker-process client, environments, Orbit.

Every measurement runs in a child process (a *worker*, ``python -m bench.worker``) so candidates never share
TensorFlow's tracing caches, thread pools or imported modules. A worker stays alive for a whole part and answers
JSON requests one at a time, so the parent can interleave candidates round by round (A B C, B C A, C A B, ...)
while only one of them runs at any moment.
"""

from __future__ import annotations

import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
ORBIT_PKGS = BENCH_DIR / ".orbit-pkgs"
ORBIT_REQUIREMENT = "tf-models-official==2.20.0"

# Environment every TensorFlow child process gets (on top of the parent's).
TF_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONHASHSEED": "0",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


# ---------------------------------------------------------------------------------------------------- statistics


def median(values: Iterable[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Median, min, max and the relative half-range of a sample: enough to see how noisy it was."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "rel_spread": None}
    mid = statistics.median(values)
    return {
        "median": mid,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "rel_spread": (max(values) - min(values)) / (2 * mid) if mid else None,
    }


def rotations(items: Sequence[Any], round_index: int) -> List[Any]:
    """``items`` rotated by ``round_index``: the order candidates run in within one round."""
    if not items:
        return []
    k = round_index % len(items)
    return list(items[k:]) + list(items[:k])


def paired_ratio(numerators: Sequence[Optional[float]], denominators: Sequence[Optional[float]]) -> Optional[float]:
    """Median of per-round ratios (each pair measured back to back), robust to slow drifts in machine load."""
    ratios = [n / d for n, d in zip(numerators, denominators) if n is not None and d]
    return median(ratios)


# ---------------------------------------------------------------------------------------------------- environment


def child_env(extra: Optional[Mapping[str, str]] = None, pythonpath: Optional[Sequence[Path]] = None) -> Dict[str, str]:
    """The environment for a TensorFlow child process.

    Args:
        extra: Variables to add (e.g. the GCS emulator's).
        pythonpath: Replaces PYTHONPATH; the repository root is always first so ``bench.worker`` imports.
    """
    env = dict(os.environ)
    env.update(TF_ENV)
    paths = [str(REPO_ROOT)] + [str(p) for p in (pythonpath or [])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if extra:
        env.update(extra)
    return env


def environment_info() -> Dict[str, Any]:
    """What the numbers were measured on."""
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
    }
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        from importlib import metadata

        for dist in ("tensorflow", "tf-keras", "numpy", "matplotlib"):
            try:
                info[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                info[dist] = None
    except ImportError:
        pass
    return info


# ---------------------------------------------------------------------------------------------------- Orbit


def orbit_status(policy: str) -> Dict[str, Any]:
    """Makes Orbit importable from ``bench/.orbit-pkgs`` (a ``pip --target`` dir), or says why it is not.

    Orbit (from ``tf-models-official``) is installed with ``--no-deps`` into its own directory, not into the
    project's virtualenv: it then runs on the virtualenv's TensorFlow without a second 2 GB download, and only
    the Orbit worker process has it on its ``PYTHONPATH``.

    Args:
        policy: ``install``: install when missing (needs PyPI); ``if-present``: use only an existing install;
            ``skip``: do not measure Orbit.

    Returns:
        ``{"available": bool, "path": str, "reason": str}``.
    """
    if policy == "skip":
        return {"available": False, "path": str(ORBIT_PKGS), "reason": "skipped (--orbit skip)"}
    if (ORBIT_PKGS / "orbit" / "__init__.py").is_file():
        return {"available": True, "path": str(ORBIT_PKGS), "reason": "already installed"}
    if policy != "install":
        return {"available": False, "path": str(ORBIT_PKGS), "reason": f"not installed at {ORBIT_PKGS}"}
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--target", str(ORBIT_PKGS), ORBIT_REQUIREMENT,
    ]  # fmt: skip
    print(f"[bench] installing Orbit: {' '.join(command)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not (ORBIT_PKGS / "orbit" / "__init__.py").is_file():
        return {
            "available": False,
            "path": str(ORBIT_PKGS),
            "reason": f"pip install failed ({done.returncode}): {done.stderr[-800:]}",
        }
    return {"available": True, "path": str(ORBIT_PKGS), "reason": f"installed {ORBIT_REQUIREMENT}"}


# ---------------------------------------------------------------------------------------------------- workers


EXIT_TIMEOUT_S = 15.0


class WorkerError(RuntimeError):
    """A worker process failed, answered with an error, or did not answer in time."""


class Worker:
    """A ``python -m bench.worker`` child process answering one JSON request at a time.

    The worker writes its answers to the pipe that was its stdout and sends its own stdout and stderr (the
    controllers' log lines, TensorFlow's chatter) to ``log_path``, so logging costs what it costs in a job whose
    log is captured to a file.
    """

    def __init__(
        self,
        name: str,
        candidate: str,
        log_dir: Path,
        *,
        env: Optional[Mapping[str, str]] = None,
        pythonpath: Optional[Sequence[Path]] = None,
    ) -> None:
        self.name = name
        self.candidate = candidate
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        command = [sys.executable, "-m", "bench.worker", "--candidate", candidate]
        self.started = time.perf_counter()
        with open(self.log_path, "ab") as log_file:  # The worker moves its stdout here too (see bench.worker).
            self.process = subprocess.Popen(
                command,
                cwd=str(REPO_ROOT),
                env=child_env(env, pythonpath),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                bufsize=1,
            )

    def request(self, op: str, timeout_s: float = 600.0, **kwargs: Any) -> Dict[str, Any]:
        """Sends ``{"op": op, **kwargs}`` and returns the answer; raises WorkerError on failure or timeout."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise WorkerError(f"worker {self.name} is gone ({error}); log: {self._log_tail()}") from None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise WorkerError(f"worker {self.name} did not answer {op!r} within {timeout_s} s; log: {self._log_tail()}")
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait(5)
            raise WorkerError(f"worker {self.name} exited ({code}) during {op!r}; log: {self._log_tail()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise WorkerError(f"worker {self.name} failed {op!r}: {answer.get('error')}")
        return answer

    def send_quit(self) -> None:
        """Tells the worker to exit, without waiting for it."""
        if self.process.poll() is None and self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()  # End of input: the worker's request loop ends and it exits.
            except OSError:
                pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.send_quit()
            try:
                self.process.wait(EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Its answers are all in; a TensorFlow process has been seen to hang in interpreter shutdown.
                log(f"worker {self.name} did not exit within {EXIT_TIMEOUT_S} s; killed (stacks in {self.log_path})")
                self._dump_stacks()
                self.process.kill()
                self.process.wait(10)

    def _dump_stacks(self) -> None:
        """Appends the worker's thread stacks to its log, when py-spy is installed (diagnostics only)."""
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            return
        try:
            dump = subprocess.run([str(py_spy), "dump", "--pid", str(self.process.pid)], capture_output=True,
                                  text=True, timeout=30)
            with open(self.log_path, "a") as log_file:
                log_file.write("\n[bench] worker did not exit; py-spy dump:\n" + dump.stdout + dump.stderr)
            print(f"[bench] py-spy dump of worker {self.name} (pid {self.process.pid}), stuck in exit:\n"
                  + dump.stdout[-4000:], flush=True)
        except (OSError, subprocess.SubprocessError):
            pass

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"<no log: {error}>"

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WorkerPool:
    """Starts several workers at once (their TensorFlow imports overlap) and closes them all."""

    def __init__(self) -> None:
        self.workers: Dict[str, Worker] = {}

    def start(self, name: str, candidate: str, log_dir: Path, **kwargs: Any) -> Worker:
        worker = Worker(name, candidate, log_dir, **kwargs)
        self.workers[name] = worker
        return worker

    def wait_ready(self, timeout_s: float = 300.0) -> Dict[str, float]:
        """Waits for every worker's hello; returns seconds from spawn to ready, per worker."""
        ready = {}
        for name, worker in self.workers.items():
            worker.request("hello", timeout_s=timeout_s)
            ready[name] = time.perf_counter() - worker.started
        return ready

    def close(self) -> None:
        """Asks every worker to quit at once (TensorFlow's exit takes seconds), then waits for all."""
        t0 = time.perf_counter()
        for worker in self.workers.values():
            worker.send_quit()
        for name, worker in self.workers.items():
            worker.close()
            if time.perf_counter() - t0 > 10:
                log(f"worker {name} took {time.perf_counter() - t0:.0f} s to exit")

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory on local disk for checkpoints and logs."""
    return tempfile.TemporaryDirectory(prefix=f"tfpipe-bench-{prefix}-")


def log(message: str) -> None:
    """Progress line of the runner (stderr stays free for errors)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
