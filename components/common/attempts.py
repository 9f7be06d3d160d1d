"""What a retried step knows about the attempt before it: a small failure record in the run directory.

KFP retries a failed step with the same inputs (train: `SETTINGS["train"]` in
`tfpipe.components.step_settings`), after a backoff. That is right for a
preemption or a flaky service, and wrong for a mistake that can never work: each
retry repeats it (on Vertex, on a freshly provisioned VM). So the train and
continuous-eval steps record how they failed, in `<model_dir>/failures/<step>.json`:
a fingerprint of their inputs (a hash: no value is stored), the error in one line,
whether it is of a kind that repeats (`DETERMINISTIC`: a shape, type or value
mistake, e.g. a malformed record in the data; not a network, storage or preemption
error), and the latest checkpoint at the time. (A bad input or a missing optional
dependency, `checks.INPUT_ERRORS`, is not recorded: the checks find it before any
work, in seconds, and write nothing.) The next attempt reads it first:

* same inputs, a repeating error, no checkpoint then and none now (nothing could have
  changed): it fails at once, saying so (`RepeatedFailureError`, one line, exit 2);
* otherwise, when it is a retry of the same inputs, it says
  `<step>: retrying (n/N) after: <error>` and runs (N: `$TFPIPE_RETRIES`, which
  the pipeline sets from the same policy, when known).

A success removes the record; a record older than `TTL_S` is ignored (a later run
with the same explicit `model_dir` starts afresh). Only the chief writes it.
"""

import functools
import hashlib
import json
import os
import time
import types
from typing import Any, Callable, Mapping, Optional, TypeVar

import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import checkpoints
from tfpipe.components.common import probe
from tfpipe.components.common import strategy as strategy_lib
from tfpipe.components.step_settings import RETRIES_ENV
from tfpipe.controller_core import run_dir

FOLDER = "failures"
TTL_S = 3600.0
# Errors that come back the same way when nothing changed: types, shapes, values. Storage, network, memory and
# preemption errors are not here: those retry as KFP says. (A bad input, `checks.InputError`, is found before any
# work, in seconds, and writes nothing, as docs/inputs.md promises: it is not recorded.)
DETERMINISTIC = (ValueError, TypeError, KeyError, AttributeError, IndexError, NotImplementedError,
                 ImportError, ZeroDivisionError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)

F = TypeVar("F", bound=Callable[..., Any])


class RepeatedFailureError(checks.InputError):
    """The previous attempt failed the same way with the same inputs, and nothing changed since."""


def record_path(model_dir: str, step: str) -> str:
    """Where step `step` records its failure in `model_dir`."""
    return f"{model_dir.rstrip('/')}/{FOLDER}/{step}.json"


def inputs_fingerprint(inputs: Mapping[str, Any]) -> str:
    """A hash of the step's inputs (values never stored)."""
    text = json.dumps({k: v for k, v in inputs.items()}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _progress(model_dir: str) -> Optional[int]:
    latest = checkpoints.latest_complete_checkpoint(model_dir)
    return None if latest is None else run_dir.checkpoint_step(latest)


def _is_chief() -> bool:
    """Whether this process writes the run directory (no `TF_CONFIG`, or the chief of its cluster)."""
    if not os.environ.get("TF_CONFIG"):
        return True
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return strategy_lib.is_chief(types.SimpleNamespace(cluster_resolver=resolver))


def _read(path: str) -> Optional[dict]:
    try:
        record = run_dir.read_json(path)
    except (ValueError, tf.errors.OpError):
        return None  # Unreadable: as if absent (the record only saves time).
    if not isinstance(record, dict) or time.time() - float(record.get("time", 0)) > TTL_S:
        return None
    return record


def _retry_count() -> str:
    value = os.environ.get(RETRIES_ENV, "")
    return f"/{value}" if value.isdigit() else ""


def guarded(step: str) -> Callable[[F], F]:
    """Decorator for a step's `run(args, **extra)` (inside `Interface.takes_inputs`): reads, writes and clears its
    failure record around it, as the module docstring says.

    Args:
        step: The step's name (the record's file name, and the first word of its lines).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(args: Any, **extra: Any) -> Any:
            model_dir = getattr(args, "model_dir", "")
            if not model_dir:
                return fn(args, **extra)
            path = record_path(model_dir, step)
            inputs = inputs_fingerprint(vars(args))
            found = _read(path)
            previous = found if found and found.get("inputs") == inputs else None  # Else: not a retry of these.
            attempt = int(previous.get("attempt", 1)) + 1 if previous else 1
            if previous is not None:
                if previous.get("deterministic") and previous.get("progress") is None and _progress(model_dir) is None:
                    raise RepeatedFailureError(
                        f"not retrying: attempt {attempt - 1} failed with the same inputs before the first "
                        f"checkpoint, and there is still none: {previous.get('error')} (fix the cause and start a "
                        f"new run, or remove {path} to try again)."
                    )
                print(f"{step}: retrying ({attempt - 1}{_retry_count()}) after: {previous.get('error')}", flush=True)
            chief = _is_chief()
            try:
                result = fn(args, **extra)
            except checks.INPUT_ERRORS:
                raise  # Found before any work, in seconds, at every attempt; nothing is written.
            except Exception as e:
                if chief:
                    _maybe_write(path, {
                        "step": step, "inputs": inputs, "attempt": attempt, "error": probe.one_line(e),
                        "deterministic": isinstance(e, DETERMINISTIC), "progress": _progress(model_dir),
                        "time": time.time(),
                    })
                raise
            if chief and found is not None:
                run_dir.remove_if_present(path)
            return result

        return run  # type: ignore[return-value]

    return decorate


def _maybe_write(path: str, record: Mapping[str, Any]) -> None:
    """Writes the record; a run directory that cannot be written (the very fault, perhaps) is no second error."""
    try:
        run_dir.write_json_atomic(path, dict(record))
    except (OSError, tf.errors.OpError):
        pass
