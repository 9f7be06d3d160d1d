"""Fault policies for the test GCS proxy: seeded, deterministic 503s, 429s, dropped connections and slow replies.

A policy is handed to :class:`~tests.support.gcs_emulator.GcsEmulator` (``fault_policy=``) and pickled into the proxy's
child process, so it lives here, at module level, and imports only the standard library and
:mod:`tests.support.gcs_proxy`.

:class:`RandomGcsFaults` faults a share of requests, chosen from ``(seed, request sequence number)`` alone, so a run
is reproducible given the same request order; :class:`TargetedGcsFaults` faults the n-th request of a given GCS call
(see :func:`operation`). Every fault is one GCS itself, or the network in front of it, can produce; nothing is ever
corrupted:

``http_503``      answer ``503 Service Unavailable``; the emulator never sees the request.
``http_429``      answer ``429 Too Many Requests`` with ``Retry-After``; the emulator never sees the request.
``reset_before``  close the connection without an answer; the emulator never sees the request.
``reset_after``   forward the request (it takes effect), then close without an answer: the client cannot tell
                  whether it happened, the hard case for non-idempotent calls (rename, delete, upload).
``truncate``      forward, relay the status line, headers and half of a framed body, then close (an answer without
                  a body, e.g. a DELETE's 204, is dropped whole, as with ``reset_after``).
``slow``          wait ``slow_s`` seconds, then forward normally.

Each injected fault is appended as one JSON line to ``log_path`` (written by the proxy's child process, read by the
test with :func:`read_fault_log` / :func:`count_faults`).

**Emulator fidelity (resumable-upload status queries).** When an upload ``PUT`` fails, TensorFlow asks for the
session's status with an empty ``PUT`` carrying ``Content-Range: bytes */N``. GCS answers ``308 Resume Incomplete``
(with the persisted ``Range``) and never finalizes an object on such a query. fake-gcs-server (1.54) treats it as
"end of a streaming upload" and commits the object with whatever it holds, an empty object when the data ``PUT``
never reached it: TensorFlow then takes the upload as complete, and the object is silently empty (measured: a 503 on
the data ``PUT`` left a 0-byte object and a successful ``GFile.close()``). So for every session whose data ``PUT``
never reached the emulator, the policy answers a status query itself, ``308`` without ``Range`` as GCS does (or with a
503, 429 or reset when it faults that query); status queries for sessions that did reach it are forwarded (the emulator, having committed
and dropped the session, answers ``404``, and TensorFlow restarts the upload; GCS would answer ``200``: both end with
the complete object).
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.gcs_proxy import ProxiedRequest, ProxyFault, ProxyResponse

FAULT_KINDS: tuple[str, ...] = ("http_503", "http_429", "reset_before", "reset_after", "truncate", "slow")
"""Every fault kind :class:`RandomGcsFaults` injects."""

FORWARDING_KINDS = frozenset({"reset_after", "truncate", "slow"})
"""Fault kinds whose request still reaches the emulator (and takes effect)."""

DEFAULT_WEIGHTS: Mapping[str, float] = {kind: 1.0 for kind in FAULT_KINDS}


def operation(request: ProxiedRequest) -> str:
    """Names the GCS call a request makes: ``read`` (object media), ``stat``, ``list``, ``delete``, ``rewrite``,
    ``compose``, ``bucket``, ``upload-session`` (start a resumable upload), ``upload-data``, ``upload-status`` (a
    resumable session's status query), ``upload-media`` / ``upload-multipart`` (one-shot uploads)."""
    url = urllib.parse.urlsplit(request.path)
    query = urllib.parse.parse_qs(url.query)
    path = url.path
    if request.host == "storage.googleapis.com" or path.startswith("/download/"):
        return "read"
    if path.startswith("/upload/"):
        if "upload_id" in query:
            return "upload-status" if _is_status_query(request) else "upload-data"
        upload_type = query.get("uploadType", [""])[0]
        return "upload-session" if upload_type == "resumable" else f"upload-{upload_type or 'other'}"
    if "/rewriteTo/" in path:
        return "rewrite"
    if "/compose" in path:
        return "compose"
    if request.method == "DELETE":
        return "delete"
    if path.rstrip("/").endswith("/o"):
        return "list"
    if "/o/" in path:
        return "stat"
    return "bucket"


def _header(request: ProxiedRequest, name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in request.headers if key.lower() == lowered), None)


def _upload_id(request: ProxiedRequest) -> str | None:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query).get("upload_id")
    return values[0] if values else None


def _is_status_query(request: ProxiedRequest) -> bool:
    """An empty ``PUT`` to an upload session with ``Content-Range: bytes */N``: "how much do you have?"."""
    content_range = (_header(request, "Content-Range") or "").replace(" ", "")
    return request.method == "PUT" and not request.body and content_range.startswith("bytes*/")


class _GcsFaultPolicy:
    """What every policy here shares: turning a fault kind into the proxy's answer, the upload-status shim, the log.

    Subclasses implement :meth:`_choose`.
    """

    def __init__(self, *, slow_s: float, retry_after_s: int, log_path: str | os.PathLike[str] | None) -> None:
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.log_path = str(log_path) if log_path is not None else None
        self._reached_emulator: set[str] = set()  # Upload sessions whose data PUT was forwarded.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # Not picklable; a fresh one is made in the proxy's process.
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _choose(self, request: ProxiedRequest) -> str | None:
        raise NotImplementedError

    def __call__(self, request: ProxiedRequest) -> ProxyResponse | ProxyFault | None:
        with self._lock:
            kind = self._choose(request)
            upload_id = _upload_id(request)
            if upload_id is not None and _is_status_query(request):
                if upload_id not in self._reached_emulator:
                    # The emulator must never see this query: it would commit an empty object (module docstring).
                    if kind in FORWARDING_KINDS:
                        kind = None  # Such faults need the emulator's answer: the query is answered unfaulted.
                    if kind is None:
                        return ProxyResponse(308, "Resume Incomplete")
            elif upload_id is not None and request.method == "PUT" and (kind is None or kind in FORWARDING_KINDS):
                self._reached_emulator.add(upload_id)
        if kind is None:
            return None
        self._log(kind, request)
        return self._fault(kind)

    def _fault(self, kind: str) -> ProxyResponse | ProxyFault:
        if kind == "http_503":
            return ProxyResponse(
                503,
                "Service Unavailable",
                body=b'{"error": {"code": 503, "message": "injected"}}',
                headers=(("Content-Type", "application/json"),),
            )
        if kind == "http_429":
            return ProxyResponse(
                429,
                "Too Many Requests",
                body=b'{"error": {"code": 429, "message": "injected rate limit"}}',
                headers=(("Content-Type", "application/json"), ("Retry-After", str(self.retry_after_s))),
            )
        if kind == "reset_before":
            return ProxyFault(drop="before_forward")
        if kind == "reset_after":
            return ProxyFault(drop="after_forward")
        if kind == "truncate":
            return ProxyFault(drop="mid_body")
        if kind == "slow":
            return ProxyFault(delay_s=self.slow_s)
        raise ValueError(f"unknown fault kind {kind!r}")

    def _log(self, kind: str, request: ProxiedRequest) -> None:
        if self.log_path is None:
            return
        line = json.dumps(
            {
                "sequence": request.sequence,
                "kind": kind,
                "op": operation(request),
                "method": request.method,
                "host": request.host,
                "path": request.path[:300],
            },
            sort_keys=True,
        )
        # One O_APPEND write per line: lines from concurrent proxy threads never interleave.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


class RandomGcsFaults(_GcsFaultPolicy):
    """Faults a seeded, deterministic share of the requests that reach the proxy.

    Whether request ``n`` (the proxy's 1-based arrival number) is faulted, and how, depends only on ``(seed, n)``.

    Example::

        policy = RandomGcsFaults(rate=0.15, seed=7, log_path=tmp_path / "faults.jsonl")
        with GcsEmulator(fault_policy=policy) as emulator:
            ...
        print(count_faults(tmp_path / "faults.jsonl"))   # Counter({"http_503": 12, ...})
    """

    def __init__(
        self,
        rate: float,
        *,
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        slow_s: float = 0.3,
        retry_after_s: int = 1,
        log_path: str | os.PathLike[str] | None = None,
        skip_first: int = 0,
    ) -> None:
        """Configures the policy.

        Args:
            rate: Share of requests to fault, in [0, 1].
            seed: Seed of the decisions.
            weights: Relative weight of each kind in :data:`FAULT_KINDS` (missing kinds: 0); all equal when None.
            slow_s: The delay of a ``slow`` reply.
            retry_after_s: The ``Retry-After`` of a ``429``.
            log_path: File that gets one JSON line per injected fault; None logs nothing.
            skip_first: Never fault the first this many requests.

        Raises:
            ValueError: For a rate outside [0, 1], an unknown kind, or weights that are all zero.
        """
        super().__init__(slow_s=slow_s, retry_after_s=retry_after_s, log_path=log_path)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}")
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self._kinds = [kind for kind in FAULT_KINDS if weights.get(kind, 0) > 0]
        if not self._kinds:
            raise ValueError("at least one fault kind needs a positive weight")
        self._weights = [float(weights[kind]) for kind in self._kinds]
        self.rate = rate
        self.seed = seed
        self.skip_first = skip_first

    def choose(self, sequence: int) -> str | None:
        """The fault kind for request ``sequence``, or None to forward it untouched."""
        if sequence <= self.skip_first or self.rate == 0:
            return None
        rng = random.Random(f"{self.seed}:{sequence}")  # A str seed hashes with SHA-512: same in every process.
        if rng.random() >= self.rate:
            return None
        return rng.choices(self._kinds, self._weights)[0]

    def _choose(self, request: ProxiedRequest) -> str | None:
        return self.choose(request.sequence)


class TargetedGcsFaults(_GcsFaultPolicy):
    """Faults exactly the listed requests: the ``n``-th request of a GCS operation (see :func:`operation`).

    Example: a 503 on the first upload of data, a lost answer on the first rewrite, a 429 on the first DELETE of an
    object whose (URL-escaped) path contains ``b.bin``::

        TargetedGcsFaults([("upload-data", 1, "http_503"), ("rewrite", 1, "reset_after"),
                           ("delete", 1, "http_429", "b.bin")])
    """

    def __init__(
        self,
        rules: Iterable[tuple[str, int, str] | tuple[str, int, str, str]],
        *,
        slow_s: float = 0.3,
        retry_after_s: int = 1,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Configures the policy.

        Args:
            rules: ``(operation, occurrence, kind[, path_contains])``: fault the ``occurrence``-th (1-based) request
                of ``operation`` (whose request path contains ``path_contains``, when given) with ``kind`` (one of
                :data:`FAULT_KINDS`).
            slow_s: The delay of a ``slow`` reply.
            retry_after_s: The ``Retry-After`` of a ``429``.
            log_path: File that gets one JSON line per injected fault; None logs nothing.
        """
        super().__init__(slow_s=slow_s, retry_after_s=retry_after_s, log_path=log_path)
        self._rules: dict[tuple[str, str], dict[int, str]] = collections.defaultdict(dict)
        for op, occurrence, kind, *match in rules:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
            self._rules[(op, match[0] if match else "")][occurrence] = kind
        self._seen: collections.Counter = collections.Counter()

    def _choose(self, request: ProxiedRequest) -> str | None:
        op = operation(request)
        chosen = None
        for (rule_op, match), kinds in self._rules.items():
            if rule_op == op and match in request.path:
                self._seen[(rule_op, match)] += 1
                chosen = chosen or kinds.get(self._seen[(rule_op, match)])
        return chosen


def read_fault_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The faults a policy logged to ``path``, in the order written (empty when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count_faults(path: str | os.PathLike[str], *, by: Iterable[str] = ("kind",)) -> collections.Counter:
    """Counts logged faults by the given fields: ``Counter({"http_503": 4, ...})`` by kind, or tuples of fields."""
    fields = tuple(by)
    counter: collections.Counter = collections.Counter()
    for entry in read_fault_log(path):
        counter[entry[fields[0]] if len(fields) == 1 else tuple(entry[f] for f in fields)] += 1
    return counter
