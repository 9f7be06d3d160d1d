"""Loopback TLS-terminating proxy that routes Google Cloud Storage traffic to a local emulator.

TensorFlow's built-in gs:// filesystem has its endpoints compiled in (``https://www.googleapis.com/...`` and
``https://storage.googleapis.com/...``) but its libcurl honours ``https_proxy``/``http_proxy`` and
``CURL_CA_BUNDLE``. :class:`GcsProxy` is the proxy those variables point at:

* ``CONNECT www.googleapis.com:443`` and ``CONNECT storage.googleapis.com:443`` are accepted; the proxy answers the
  TLS handshake itself with a certificate signed by a test CA, then reads the tunnelled HTTP requests one by one.
* Absolute-form plain-HTTP requests for the same hosts (``GET http://www.googleapis.com/... HTTP/1.1``) are
  accepted too.
* Every other target is refused with ``403`` and the connection is closed.

Each accepted request is read completely (a chunked body is de-chunked), its framing headers are rewritten
(``Transfer-Encoding``, ``Content-Length``, ``Expect`` and hop-by-hop headers are dropped, a correct
``Content-Length`` and ``Connection: close`` are sent), and it is forwarded on a fresh connection to the emulator
with its ``Host`` header kept, so the emulator builds URLs for the public host names. The response is streamed back.
``Expect: 100-continue`` is answered by the proxy. The client's connection is kept alive while responses are
self-delimiting.

All sockets carry timeouts and the proxy binds to 127.0.0.1 only.

Run the proxy in a process that makes no TensorFlow gs:// calls: some TensorFlow entry points (for example
``tf.train.Checkpoint.restore``, through ``NewCheckpointReader``) hold the GIL during their file I/O, so proxy threads
in the same process could never answer and the call would hang. :mod:`tests.support.gcs_proxy_process` runs this
module as a script in a child process for that reason; its request counters then live in a shared memory-mapped file
(:class:`ProxyCounters`). This module imports only the standard library so that the child starts quickly.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import mmap
import os
import pickle
import signal
import socket
import ssl
import struct
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

_LOG = logging.getLogger(__name__)

GCS_HOSTS: tuple[str, ...] = ("www.googleapis.com", "storage.googleapis.com")
"""The host names the proxy accepts: TensorFlow's compiled-in GCS API and download hosts."""

_MAX_LINE = 64 * 1024
_MAX_HEADERS = 200
_MAX_BODY = 1024 * 1024 * 1024
_MAX_REQUESTS_PER_CONNECTION = 10_000
_COPY_BUFFER = 256 * 1024
_ACCEPT_POLL_S = 0.2
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "content-length", "expect"}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclasses.dataclass(frozen=True)
class ProxiedRequest:
    """A complete client request as the proxy is about to forward it.

    Attributes:
        sequence: 1-based arrival order of the request across all connections of this proxy.
        method: The HTTP method, e.g. ``"GET"``.
        host: The GCS host the client addressed, e.g. ``"storage.googleapis.com"``.
        path: The origin-form request target, e.g. ``"/storage/v1/b/bkt/o?prefix=a"``.
        headers: End-to-end request headers, in order, without framing or hop-by-hop headers.
        body: The request body, de-chunked.
    """

    sequence: int
    method: str
    host: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclasses.dataclass(frozen=True)
class ProxyResponse:
    """A response the proxy sends itself instead of forwarding (returned by a fault policy).

    Attributes:
        status: The HTTP status code.
        reason: The reason phrase.
        headers: Extra response headers; ``Content-Length`` and ``Connection`` are added by the proxy.
        body: The response body.
    """

    status: int
    reason: str = "Injected"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


DROP_MODES: tuple[str, ...] = ("none", "before_forward", "after_forward", "mid_body")
"""The values of :attr:`ProxyFault.drop`."""


@dataclasses.dataclass(frozen=True)
class ProxyFault:
    """A transport fault the proxy plays itself (returned by a fault policy instead of a :class:`ProxyResponse`).

    Attributes:
        delay_s: Seconds to wait before anything else: with ``drop="none"``, a slow reply.
        drop: How the client connection ends:

            * ``"none"``: the request is forwarded and the answer relayed normally;
            * ``"before_forward"``: the connection is closed at once, without an answer; the emulator never sees the
              request;
            * ``"after_forward"``: the request is forwarded (it takes effect), the emulator's whole answer is read,
              and the connection is closed without sending a byte of it;
            * ``"mid_body"``: the request is forwarded, the answer's status line, headers and the first half of its
              body are relayed, then the connection is closed. Only a body framed by ``Content-Length`` or chunked
              coding is cut (a client can tell it is incomplete, as with GCS, which always frames its bodies); an
              answer without a body, or with an unframed one, is dropped whole, as with ``"after_forward"``.
    """

    delay_s: float = 0.0
    drop: str = "none"

    def __post_init__(self) -> None:
        if self.drop not in DROP_MODES:
            raise ValueError(f"ProxyFault.drop must be one of {DROP_MODES}, got {self.drop!r}")
        if not self.delay_s >= 0:
            raise ValueError(f"ProxyFault.delay_s must be >= 0, got {self.delay_s!r}")


FaultPolicy = Callable[[ProxiedRequest], "ProxyResponse | ProxyFault | None"]
"""Hook called for every accepted request before forwarding: return a response to send instead, a
:class:`ProxyFault` to play, or None to forward the request unchanged."""


class ProxyProtocolError(Exception):
    """A client or upstream spoke malformed or unsupported HTTP."""


@dataclasses.dataclass
class _Head:
    """A parsed HTTP request or response head."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        """Returns the first value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    def tokens(self, name: str) -> list[str]:
        """Returns the lower-cased comma-separated tokens of every ``name`` header."""
        lowered = name.lower()
        values = (value for key, value in self.headers if key.lower() == lowered)
        return [token.strip().lower() for value in values for token in value.split(",") if token.strip()]


def _read_line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProxyProtocolError(f"line longer than {_MAX_LINE} bytes")
    return line


def _read_head(reader: BinaryIO) -> _Head | None:
    """Reads one HTTP head; returns None on a clean end of stream before it starts."""
    line = _read_line(reader)
    if line in (b"\r\n", b"\n"):  # RFC 9112 2.2: tolerate one empty line before a request.
        line = _read_line(reader)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2:
        raise ProxyProtocolError(f"malformed start line {line[:200]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    headers: list[tuple[str, str]] = []
    for _ in range(_MAX_HEADERS):
        line = _read_line(reader)
        if line in (b"\r\n", b"\n"):
            return _Head(start, headers)
        name, sep, value = line.decode("latin-1").partition(":")
        if not line or not sep:
            raise ProxyProtocolError(f"malformed header line {line[:200]!r} after {start!r}")
        headers.append((name.strip(), value.strip()))
    raise ProxyProtocolError(f"more than {_MAX_HEADERS} headers after {start!r}")


def _read_exact(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ProxyProtocolError(f"stream ended after {len(data)} of {size} body bytes")
    return data


def _read_chunked(reader: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = _read_line(reader)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProxyProtocolError(f"malformed chunk size line {line[:100]!r}") from None
        if size == 0:
            break
        total += size
        if total > _MAX_BODY:
            raise ProxyProtocolError(f"chunked body larger than {_MAX_BODY} bytes")
        chunks.append(_read_exact(reader, size))
        if _read_line(reader) not in (b"\r\n", b"\n"):
            raise ProxyProtocolError(f"chunk of {size} bytes not followed by CRLF")
    for _ in range(_MAX_HEADERS):  # Trailer section, discarded.
        line = _read_line(reader)
        if line in (b"\r\n", b"\n"):
            return b"".join(chunks)
        if not line:
            break
    raise ProxyProtocolError("chunked body trailer section did not end")


def _read_request_body(reader: BinaryIO, head: _Head) -> bytes:
    """Reads a request body framed by chunked encoding or Content-Length; ``identity`` codings are ignored."""
    codings = [coding for coding in head.tokens("transfer-encoding") if coding != "identity"]
    if codings:
        if codings != ["chunked"]:
            raise ProxyProtocolError(f"unsupported request Transfer-Encoding {codings!r}")
        return _read_chunked(reader)
    length = head.get("content-length")
    if length is None:
        return b""
    if not length.isdigit() or int(length) > _MAX_BODY:
        raise ProxyProtocolError(f"bad request Content-Length {length!r}")
    return _read_exact(reader, int(length))


def _encode_head(start: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _simple_response(status: int, reason: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    all_headers = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
    return _encode_head(f"HTTP/1.1 {status} {reason}", all_headers) + body


def _copy_exact(reader: BinaryIO, sink: socket.socket, size: int) -> None:
    remaining = size
    while remaining > 0:
        data = reader.read(min(remaining, _COPY_BUFFER))
        if not data:
            raise ProxyProtocolError(f"upstream body ended with {remaining} of {size} bytes missing")
        sink.sendall(data)
        remaining -= len(data)


def _copy_to_eof(reader: BinaryIO, sink: socket.socket) -> None:
    while data := reader.read1(_COPY_BUFFER):  # type: ignore[attr-defined]
        sink.sendall(data)


class ProxyCounters:
    """Request counters kept in a buffer that may be a memory-mapped file shared with another process.

    Only the proxy (one process) writes; any process that maps the same file may read.
    """

    _SLOTS = ("sequence", "served", "refused")
    SIZE = 8 * len(_SLOTS)
    """Bytes of buffer needed: one little-endian int64 per counter."""

    def __init__(self, buffer: bytearray | mmap.mmap | None = None) -> None:
        """Wraps ``buffer`` (at least :attr:`SIZE` bytes), or a fresh zeroed in-memory buffer when None."""
        self._buffer = buffer if buffer is not None else bytearray(self.SIZE)
        if len(self._buffer) < self.SIZE:
            raise ValueError(f"counter buffer has {len(self._buffer)} bytes, needs {self.SIZE}")
        self._lock = threading.Lock()

    @classmethod
    def create_file(cls, path: Path) -> ProxyCounters:
        """Writes a zeroed counter file at ``path`` and maps it."""
        path.write_bytes(bytes(cls.SIZE))
        return cls.open_file(path)

    @classmethod
    def open_file(cls, path: Path) -> ProxyCounters:
        """Maps the existing counter file at ``path`` (shared, writable)."""
        with path.open("r+b") as file:
            return cls(mmap.mmap(file.fileno(), cls.SIZE))

    def close(self) -> None:
        """Unmaps a file-backed buffer; the counters read 0 afterwards."""
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()
            self._buffer = bytearray(self.SIZE)

    def _get(self, slot: str) -> int:
        return struct.unpack_from("<q", self._buffer, 8 * self._SLOTS.index(slot))[0]

    def _increment(self, slot: str) -> int:
        with self._lock:
            value = self._get(slot) + 1
            struct.pack_into("<q", self._buffer, 8 * self._SLOTS.index(slot), value)
            return value

    def next_sequence(self) -> int:
        """Returns the next 1-based request sequence number."""
        return self._increment("sequence")

    def add_served(self) -> None:
        """Counts one complete request accepted for an answer."""
        self._increment("served")

    def add_refused(self) -> None:
        """Counts one refused request."""
        self._increment("refused")

    @property
    def served(self) -> int:
        """Complete requests accepted for an answer so far."""
        return self._get("served")

    @property
    def refused(self) -> int:
        """Requests refused so far."""
        return self._get("refused")


class GcsProxy:
    """A loopback proxy that terminates TLS for the GCS host names and forwards requests to an emulator.

    Example::

        with GcsProxy(("127.0.0.1", emulator_port), tls_files.leaf_cert, tls_files.leaf_key) as proxy:
            env["https_proxy"] = f"http://127.0.0.1:{proxy.port}"

    Attributes:
        upstream: ``(host, port)`` of the plain-HTTP emulator every accepted request is forwarded to.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        cert_file: Path,
        key_file: Path,
        *,
        io_timeout_s: float = 30.0,
        fault_policy: FaultPolicy | None = None,
        counters: ProxyCounters | None = None,
    ) -> None:
        """Prepares the proxy; nothing listens until :meth:`start`.

        Args:
            upstream: ``(host, port)`` of the plain-HTTP GCS emulator.
            cert_file: PEM certificate chain presented for the GCS host names.
            key_file: PEM private key of that certificate.
            io_timeout_s: Timeout of every socket operation, including a kept-alive client's idle time.
            fault_policy: Optional hook called with each accepted request before forwarding; when it returns a
                :class:`ProxyResponse`, that response is sent instead and the client connection is closed; when it
                returns a :class:`ProxyFault`, the proxy plays that fault (delay, dropped connection).
            counters: Where to count requests; a private in-memory set when None.
        """
        self.upstream = upstream
        self._io_timeout_s = io_timeout_s
        self._fault_policy = fault_policy
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._counters = counters if counters is not None else ProxyCounters()
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, threading.Thread] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> GcsProxy:
        """Binds 127.0.0.1 on a free port and starts accepting connections.

        Returns:
            This proxy.

        Raises:
            RuntimeError: If the proxy is already running.
        """
        if self._listener is not None:
            raise RuntimeError(f"GcsProxy already listening on port {self.port}")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(_ACCEPT_POLL_S)
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="gcs-proxy-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops accepting, closes every client connection and waits (bounded) for the worker threads.

        Args:
            timeout_s: How long to wait for each thread to finish.
        """
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout_s)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients.items())
        for conn, _ in clients:
            self._shutdown(conn)
        for _, thread in clients:
            thread.join(timeout_s)

    def __enter__(self) -> GcsProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public state ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1)."""
        if self._listener is None:
            raise RuntimeError("GcsProxy is not started")
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        """The proxy URL for ``https_proxy``/``http_proxy``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests_served(self) -> int:
        """How many complete requests were accepted and answered (forwarded or answered by the fault policy).

        A request is counted once it has been read, before its response is sent.
        """
        return self._counters.served

    @property
    def requests_refused(self) -> int:
        """How many CONNECT or plain requests were refused (non-GCS target)."""
        return self._counters.refused

    # -- connections -------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stopping.is_set():
                    _LOG.exception("GcsProxy accept failed")
                return
            conn.settimeout(self._io_timeout_s)
            # Heads and bodies go out in separate writes: without this, Nagle + delayed ACK cost 40 ms a request.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._handle_client, args=(conn,), name="gcs-proxy-client", daemon=True)
            with self._lock:
                self._clients[conn] = thread
            thread.start()

    def _handle_client(self, conn: socket.socket) -> None:
        try:
            self._serve_client(conn)
        except (OSError, ProxyProtocolError) as error:  # ssl.SSLError and timeouts are OSErrors.
            if not self._stopping.is_set():
                _LOG.warning("GcsProxy connection ended: %s", error)
        except Exception:  # A failing fault policy, say: log it, drop the connection, keep serving others.
            _LOG.exception("GcsProxy connection failed")
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            self._shutdown(conn)

    def _serve_client(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as reader:
            head = _read_head(reader)
            if head is None:
                return
            if head.start[0] != "CONNECT":
                self._serve_requests(conn, reader, tunnel_host=None, first=head)
                return
        self._serve_tunnel(conn, head.start[1])

    def _serve_tunnel(self, conn: socket.socket, target: str) -> None:
        """Answers ``CONNECT target``: refuses it, or terminates TLS and serves the tunnelled requests."""
        host = self._connect_host(target)
        if host is None:
            self._refuse(conn, f"CONNECT to {target!r} is not allowed; only {GCS_HOSTS} on port 443")
            return
        # curl waits for this reply before its ClientHello, so nothing of the TLS stream is buffered in `reader`.
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls_conn = self._tls.wrap_socket(conn, server_side=True)
        with self._lock:
            if conn in self._clients:
                self._clients[tls_conn] = self._clients.pop(conn)
        try:
            with tls_conn.makefile("rb") as tls_reader:
                self._serve_requests(tls_conn, tls_reader, tunnel_host=host, first=None)
        finally:
            with self._lock:
                self._clients.pop(tls_conn, None)
            self._shutdown(tls_conn)

    def _serve_requests(
        self, conn: socket.socket, reader: BinaryIO, *, tunnel_host: str | None, first: _Head | None
    ) -> None:
        """Serves requests on one client connection until it closes, is not kept alive, or is refused."""
        head = first
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            if head is None:
                head = _read_head(reader)
                if head is None or self._stopping.is_set():
                    return
            target = self._route(head, tunnel_host)
            if target is None:
                self._refuse(conn, f"request {head.start[0]} {head.start[1][:200]!r} is not for {GCS_HOSTS}")
                return
            if not self._handle_request(conn, reader, head, *target):
                return
            head = None

    @staticmethod
    def _connect_host(target: str) -> str | None:
        host, _, port = target.rpartition(":")
        host = host.lower()
        return host if port == "443" and host in GCS_HOSTS else None

    @staticmethod
    def _route(head: _Head, tunnel_host: str | None) -> tuple[str, str] | None:
        """Returns ``(host, origin-form path)`` for an allowed request, or None to refuse it."""
        target = head.start[1]
        if tunnel_host is not None:
            return (tunnel_host, target) if target.startswith("/") else None
        url = urllib.parse.urlsplit(target)
        host = (url.hostname or "").lower()
        if url.scheme != "http" or host not in GCS_HOSTS or url.port not in (None, 80):
            return None
        path = url.path or "/"
        return host, f"{path}?{url.query}" if url.query else path

    def _refuse(self, conn: socket.socket, message: str) -> None:
        self._counters.add_refused()
        _LOG.info("GcsProxy refused: %s", message)
        conn.sendall(_simple_response(403, "Forbidden", message.encode("utf-8") + b"\n"))

    @staticmethod
    def _shutdown(conn: socket.socket) -> None:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    # -- requests ----------------------------------------------------------------------------------------------

    def _handle_request(self, conn: socket.socket, reader: BinaryIO, head: _Head, host: str, path: str) -> bool:
        """Reads one request's body, forwards it and returns whether the client connection stays open."""
        method, _, version = head.start
        if "100-continue" in head.tokens("expect"):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _read_request_body(reader, head)
        request = ProxiedRequest(
            sequence=self._counters.next_sequence(),
            method=method,
            host=host,
            path=path,
            headers=tuple((k, v) for k, v in head.headers if k.lower() not in _NOT_FORWARDED),
            body=body,
        )
        client_keep_alive = version == "HTTP/1.1" and "close" not in head.tokens("connection")
        self._counters.add_served()  # Before any response byte, so a client holding its answer sees the count.
        return self._forward(request, conn, client_keep_alive)

    def _forward(self, request: ProxiedRequest, client: socket.socket, client_keep_alive: bool) -> bool:
        """Answers one request: from the fault policy if it returns a response, else from the emulator.

        This is the single place where a request leaves the proxy; fault injection hooks in here.

        Args:
            request: The complete request.
            client: The client connection to write the response to.
            client_keep_alive: Whether the client asked to keep its connection open.

        Returns:
            Whether the client connection stays open for another request.
        """
        injected = self._fault_policy(request) if self._fault_policy is not None else None
        # Duck-typed: run as a script, this module is __main__, and a policy's ProxyFault comes from the module import.
        drop = getattr(injected, "drop", None)
        if drop is not None:
            return self._play_fault(request, client, client_keep_alive, drop, getattr(injected, "delay_s", 0.0))
        if injected is not None:
            client.sendall(_simple_response(injected.status, injected.reason, injected.body, injected.headers))
            return False
        return self._forward_upstream(request, client, client_keep_alive)

    def _forward_upstream(self, request: ProxiedRequest, client: socket.socket, client_keep_alive: bool) -> bool:
        """Forwards one request to the emulator and relays its answer; returns whether the client stays open."""
        with socket.create_connection(self.upstream, timeout=self._io_timeout_s) as upstream:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(self._upstream_request(request))
            with upstream.makefile("rb") as reader:
                return self._relay_response(reader, client, request.method, client_keep_alive)

    def _play_fault(
        self, request: ProxiedRequest, client: socket.socket, client_keep_alive: bool, drop: str, delay_s: float
    ) -> bool:
        """Plays a :class:`ProxyFault`; returns whether the client connection stays open."""
        if delay_s > 0 and self._stopping.wait(delay_s):
            return False
        if drop == "none":
            return self._forward_upstream(request, client, client_keep_alive)
        if drop == "before_forward":
            return False
        with socket.create_connection(self.upstream, timeout=self._io_timeout_s) as upstream:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.sendall(self._upstream_request(request))
            with upstream.makefile("rb") as reader:
                head, body, framed = self._read_whole_response(reader, request.method)
        if drop == "mid_body" and framed and body:
            headers = [(k, v) for k, v in head.headers if k.lower() not in ("connection", "keep-alive")]
            headers.append(("Connection", "close"))
            _, status_text, reason = head.start
            client.sendall(_encode_head(f"HTTP/1.1 {status_text} {reason}", headers) + body[: len(body) // 2])
        return False

    @staticmethod
    def _read_whole_response(upstream: BinaryIO, method: str) -> tuple[_Head, bytes, bool]:
        """Reads one complete upstream answer: its head, its raw body bytes (chunk framing kept) and whether the
        body is framed (Content-Length or chunked)."""
        head = _read_head(upstream)
        for _ in range(10):
            if head is None or not head.start[1].startswith("1") or head.start[1] == "101":
                break
            head = _read_head(upstream)
        if head is None:
            raise ProxyProtocolError(f"upstream closed without a response to {method}")
        status = int(head.start[1]) if head.start[1].isdigit() else 0
        if method == "HEAD" or status in (204, 304) or status < 200:
            return head, b"", False
        chunked = "chunked" in head.tokens("transfer-encoding")
        length = head.get("content-length")
        if length is not None and not chunked:
            if not length.isdigit():
                raise ProxyProtocolError(f"upstream sent bad Content-Length {length!r}")
            return head, _read_exact(upstream, int(length)), True
        body = upstream.read()  # The upstream closes after the body: it was sent Connection: close.
        return head, body, chunked

    @staticmethod
    def _upstream_request(request: ProxiedRequest) -> bytes:
        headers = [("Host", request.host), *request.headers]
        if request.body or request.method in _BODY_METHODS:
            headers.append(("Content-Length", str(len(request.body))))
        headers.append(("Connection", "close"))
        return _encode_head(f"{request.method} {request.path} HTTP/1.1", headers) + request.body

    @staticmethod
    def _relay_response(upstream: BinaryIO, client: socket.socket, method: str, client_keep_alive: bool) -> bool:
        """Streams one upstream response to the client and returns whether the client connection stays open."""
        head = _read_head(upstream)
        for _ in range(10):  # Skip interim 1xx responses (none are expected: Expect is not forwarded).
            if head is None or not head.start[1].startswith("1") or head.start[1] == "101":
                break
            head = _read_head(upstream)
        if head is None:
            raise ProxyProtocolError(f"upstream closed without a response to {method}")
        version, status_text, reason = head.start
        status = int(status_text) if status_text.isdigit() else 0
        no_body = method == "HEAD" or status in (204, 304) or status < 200
        chunked = "chunked" in head.tokens("transfer-encoding")
        length = head.get("content-length")
        keep_alive = client_keep_alive and (no_body or chunked or length is not None)
        headers = [(k, v) for k, v in head.headers if k.lower() not in ("connection", "keep-alive")]
        headers.append(("Connection", "keep-alive" if keep_alive else "close"))
        client.sendall(_encode_head(f"HTTP/1.1 {status_text} {reason}", headers))
        if no_body:
            return keep_alive
        if length is not None and not chunked:
            if not length.isdigit():
                raise ProxyProtocolError(f"upstream sent bad Content-Length {length!r} (version {version})")
            _copy_exact(upstream, client, int(length))
        else:
            _copy_to_eof(upstream, client)  # The upstream closes after the body: it was sent Connection: close.
        return keep_alive


# -- child-process entry point (see tests.support.gcs_proxy_process) ----------------------------------------------


def read_fault_policy(stream: BinaryIO) -> FaultPolicy | None:
    """Reads a fault policy written by :func:`write_fault_policy`: an 8-byte length, then a pickle (or nothing)."""
    header = stream.read(8)
    if len(header) != 8:
        raise ProxyProtocolError(f"expected an 8-byte fault policy length, got {len(header)} bytes")
    (length,) = struct.unpack("<Q", header)
    if length == 0:
        return None
    payload = stream.read(length)
    if len(payload) != length:
        raise ProxyProtocolError(f"fault policy pickle truncated: {len(payload)} of {length} bytes")
    policy = pickle.loads(payload)  # The test process that started this child wrote it.
    if not callable(policy):
        raise TypeError(f"fault policy must be callable, got {policy!r}")
    return policy


def write_fault_policy(stream: BinaryIO, policy: FaultPolicy | None) -> None:
    """Writes ``policy`` for :func:`read_fault_policy`; it must be picklable (e.g. a module-level function)."""
    payload = b"" if policy is None else pickle.dumps(policy)
    stream.write(struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a GcsProxy until standard input closes.")
    parser.add_argument("--upstream-port", type=int, required=True, help="port of the emulator on 127.0.0.1")
    parser.add_argument("--cert", type=Path, required=True, help="PEM certificate chain for the GCS hosts")
    parser.add_argument("--key", type=Path, required=True, help="PEM private key of that certificate")
    parser.add_argument("--counters", type=Path, required=True, help="counter file made by ProxyCounters")
    parser.add_argument("--io-timeout-s", type=float, default=30.0, help="timeout of every socket operation")
    parser.add_argument(
        "--terminate-on-exit",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="process to SIGTERM when this proxy exits (the emulator), so it dies with the test process",
    )
    return parser.parse_args(argv)


def _terminate(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the proxy until standard input reaches end of file (the parent closed it or exited).

    Standard input first carries the fault policy (see :func:`write_fault_policy`); the listening port is then
    printed as one line on standard output. On exit the ``--terminate-on-exit`` processes get SIGTERM: since standard
    input also closes when the parent is killed, the emulator cannot outlive the test process.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        policy = read_fault_policy(sys.stdin.buffer)
        counters = ProxyCounters.open_file(args.counters)
        proxy = GcsProxy(
            ("127.0.0.1", args.upstream_port),
            args.cert,
            args.key,
            io_timeout_s=args.io_timeout_s,
            fault_policy=policy,
            counters=counters,
        ).start()
        try:
            print(proxy.port, flush=True)
            sys.stdin.buffer.read()  # Blocks until the parent closes our stdin, on stop() or when it dies.
        finally:
            proxy.stop()
            counters.close()
    finally:
        _terminate(args.terminate_on_exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
