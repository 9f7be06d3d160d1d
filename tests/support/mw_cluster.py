"""Local multi-worker clusters for tests: `TF_CONFIG` on 127.0.0.1 and processes with bounded lifetimes.

Each process writes its output to a log file (never a pipe that could fill up and stall it); `wait_all`
waits for all of them up to one deadline and kills whatever is left when anything fails or the
deadline passes, so a hung collective never outlives the test.
"""

import ast
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DIGITS_CONFIG = {"batch_size": 32}


def free_ports(count: int) -> List[int]:
    """Returns `count` distinct free TCP ports on 127.0.0.1 (held open together while picked)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """`TF_CONFIG` for worker `index` of a cluster of workers on 127.0.0.1 (worker 0 is the chief)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


@dataclasses.dataclass
class Proc:
    """A started process and the file its output goes to."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start(name: str, args: Sequence[str], log_dir: Path, env: Optional[Mapping[str, str]] = None) -> Proc:
    """Starts `python <args>` in the repository root with output to `<log_dir>/<name>.log`."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        )
    return Proc(name, popen, log_path)


def kill(procs: Sequence[Proc]) -> None:
    """Kills (by their own handles) the processes of `procs` that still run."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.kill()
    for proc in procs:
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def wait_all(procs: Sequence[Proc], timeout: float) -> Dict[str, str]:
    """Waits until every process exits with status 0, at most `timeout` seconds in all.

    Returns:
        Each process's log, by name.

    Raises:
        AssertionError: When one fails or the deadline passes; every process
            left is killed first, and the message holds the tails of all logs.
    """
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = {p.name: p.popen.poll() for p in procs}
            failed = {name: code for name, code in codes.items() if code not in (None, 0)}
            if failed:
                raise AssertionError(f"process(es) failed: {failed}")
            if all(code == 0 for code in codes.values()):
                return {p.name: p.log() for p in procs}
            if time.monotonic() > deadline:
                raise AssertionError(f"process(es) still running after {timeout:.0f} s: "
                                     f"{[n for n, c in codes.items() if c is None]}")
            time.sleep(0.2)
    except AssertionError as error:
        kill(procs)
        tails = "\n".join(f"--- {p.name} (exit {p.popen.returncode}):\n{p.log()[-2500:]}" for p in procs)
        raise AssertionError(f"{error}\n{tails}") from None


def train_args(model_dir: Path, train_steps: int, *, distribution_strategy: str = "multi_worker_mirrored") -> List[str]:
    """The argument list of `python -m tfpipe.components.train` for `digits` with the small test batch."""
    return [
        "-m", "tfpipe.components.train", "--task=digits", f"--task_config={json.dumps(DIGITS_CONFIG)}",
        f"--distribution_strategy={distribution_strategy}", f"--model_dir={model_dir}", f"--train_steps={train_steps}",
        "--steps_per_loop=50", "--checkpoint_interval=50", "--max_to_keep=10",
    ]


def start_workers(model_dir: Path, train_steps: int, log_dir: Path, *, count: int = 2, tag: str = "") -> List[Proc]:
    """Starts `count` workers of one cluster, each with its own TMPDIR under `log_dir` (`tmp-<name>`)."""
    ports = free_ports(count)
    procs = []
    for index in range(count):
        name = f"worker{index}{tag}"
        tmp = log_dir / f"tmp-{name}"
        tmp.mkdir()
        env = {"TF_CONFIG": tf_config(ports, index), "TMPDIR": str(tmp)}
        procs.append(start(name, train_args(model_dir, train_steps), log_dir, env))
    return procs


def done_metrics(log: str) -> Dict[str, Any]:
    """The metrics of the `train | done | ...` line of a train log."""
    match = re.search(r"^train \| done \| .*\| metrics: (\{[^}]*\})", log, re.MULTILINE)
    assert match, f"no 'train | done' line in:\n{log[-2000:]}"
    return ast.literal_eval(match.group(1))


def model_weights(checkpoint: str) -> Dict[str, np.ndarray]:
    """The `digits` model's variables in a checkpoint, by checkpoint key."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/")}


def eval_metrics(checkpoint: str) -> Dict[str, float]:
    """Loss and accuracy of a `digits` checkpoint on the held-out split, computed in NumPy from its weights."""
    from tfpipe.components.tasks import digits

    weights = model_weights(checkpoint)
    (_, _), (x, y) = digits.load_arrays(digits.DigitsConfig(**DIGITS_CONFIG))

    def layer(i: int, kind: str) -> np.ndarray:
        return weights[f"model/layer_with_weights-{i}/{kind}/.ATTRIBUTES/VARIABLE_VALUE"]

    hidden = np.maximum(x @ layer(0, "kernel") + layer(0, "bias"), 0.0)
    logits = hidden @ layer(1, "kernel") + layer(1, "bias")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "loss": float(-log_probs[np.arange(len(y)), y].mean()),
        "accuracy": float((logits.argmax(axis=1) == y).mean()),
    }
