"""Loopback stand-ins for the KFP API server and the Vertex AI pipeline-job API, recording what clients send.

`FakeKfpServer` answers the calls `kfp.Client` 2.17 makes for `create_run_from_pipeline_package`:

* ``GET  /apis/v2beta1/healthz`` (from the client's constructor),
* ``GET  /apis/v2beta1/experiments?filter=...`` (experiment lookup by display name),
* ``POST /apis/v2beta1/experiments`` (creation when the lookup finds none),
* ``POST /apis/v2beta1/runs`` (the run, carrying the pipeline spec and runtime config),

with JSON in the snake_case field names of the KFP v2beta1 API. Every body it is sent is checked against the
real API: kfp-server-api's `V2beta1Experiment`/`V2beta1Run` models (no unknown field, enum values from the API,
strings where it has strings) and the run's `pipeline_spec` parsed strictly into kfp-pipeline-spec's
`PipelineSpec`; a body that fails answers 400, as the server would. A test can make the next ``POST /runs`` fail
with a chosen status (`fail_next_run`).

`FakeVertexServer` answers ``POST /v1/projects/<p>/locations/<r>/pipelineJobs?pipelineJobId=<id>``, the REST
call `aiplatform.PipelineJob.submit` makes (with `api_transport="rest"` and an `http://` `api_endpoint`), echoing
the job with its resource name. The job is parsed strictly into `aiplatform_v1.PipelineJob`, and its
`pipelineSpec` into `PipelineSpec`; a job that fails answers 400.

Anything else gets 404. Each server binds 127.0.0.1 on a free port, serves from a daemon thread, puts a timeout on
every connection and is stopped by `close` (or leaving the ``with`` block).
"""

import dataclasses
import http.server
import json
import re
import threading
import urllib.parse
import uuid
from typing import Any

from google.cloud import aiplatform_v1
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from kfp_server_api import models as kfp_api_models

_KFP_API = "/apis/v2beta1"
_VERTEX_CREATE_RE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/pipelineJobs$")
_SOCKET_TIMEOUT_S = 5.0
_MAX_BODY = 64 * 1024 * 1024


_PRIMITIVES = {"str": str, "datetime": str, "bool": bool}


def kfp_api_errors(value: Any, type_name: str, where: str) -> list[str]:
    """What in `value` (JSON) the KFP API's `type_name` (a kfp-server-api model or type string) does not accept."""
    if type_name in ("object", "int", "float"):
        return []
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name])
        return [] if ok else [f"{where}: {type_name} expected, got {type(value).__name__}"]
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: a list expected"]
        return [e for i, item in enumerate(value) for e in kfp_api_errors(item, type_name[5:-1], f"{where}[{i}]")]
    if type_name.startswith("dict(str, "):
        if not isinstance(value, dict):
            return [f"{where}: an object expected"]
        inner = type_name[len("dict(str, "):-1]
        return [e for k, item in value.items() for e in kfp_api_errors(item, inner, f"{where}.{k}")]
    model = getattr(kfp_api_models, type_name)
    if hasattr(model, "allowable_values"):  # An enum.
        return [] if value in model.allowable_values else [f"{where}: {value!r} is not one of {model.allowable_values}"]
    if not isinstance(value, dict):
        return [f"{where}: an object ({type_name}) expected"]
    fields = {json_name: model.openapi_types[name] for name, json_name in model.attribute_map.items()}
    errors = [f"{where}.{k}: not a field of {type_name}" for k in value if k not in fields]
    return errors + [e for k, item in value.items() if k in fields
                     for e in kfp_api_errors(item, fields[k], f"{where}.{k}")]


def pipeline_spec_errors(spec: Any, where: str) -> list[str]:
    """Why `spec` (JSON) is not a `PipelineSpec` (strict parsing: unknown fields are errors), or nothing.

    A package with a platform spec (kfp-kubernetes) is sent as `{"pipeline_spec": ..., "platform_spec": ...}`,
    which the KFP API server accepts too: then each part is parsed into its own message.
    """
    if isinstance(spec, dict) and "pipeline_spec" in spec:
        parts = {"pipeline_spec": pipeline_spec_pb2.PipelineSpec, "platform_spec": pipeline_spec_pb2.PlatformSpec}
        unknown = [f"{where}.{k}: neither pipeline_spec nor platform_spec" for k in spec if k not in parts]
        return unknown + [e for k, message in parts.items() if k in spec
                          for e in _proto_errors(spec[k], message, f"{where}.{k}")]
    return _proto_errors(spec, pipeline_spec_pb2.PipelineSpec, where)


def _proto_errors(value: Any, message: type, where: str) -> list[str]:
    try:
        json_format.ParseDict(value, message())
    except (json_format.ParseError, TypeError) as error:
        return [f"{where}: {error}"]
    return []


@dataclasses.dataclass
class RecordedRequest:
    """One request a fake server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: Any


class JsonServer:
    """A threaded loopback HTTP server that records JSON requests and answers from `_answer`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stops serving and waits (bounded) for the serving thread."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=_SOCKET_TIMEOUT_S)
        self._server.server_close()

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        return [(r.method, r.path) for r in self.requests]

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = _SOCKET_TIMEOUT_S
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._send(413, {"error": "body too large"})
                    return
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, {"error": "body is not JSON"})
                    return
                query = urllib.parse.parse_qs(split.query)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with fake._lock:
                    fake.requests.append(RecordedRequest(self.command, split.path, query, headers, body))
                    status, answer = fake._answer(self.command, split.path, query, body)
                self._send(status, answer)

            def _send(self, status: int, answer: Any) -> None:
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's method names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                return

        return Handler


class FakeKfpServer(JsonServer):
    """The fake KFP API server. Use as a context manager; `url` is its base URL."""

    def __init__(self, *, multi_user: bool = False) -> None:
        super().__init__()
        self.multi_user = multi_user
        self.experiments: dict[str, dict[str, Any]] = {}  # display name -> experiment
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> run
        self._fail_next_run: tuple[int, str] | None = None

    def fail_next_run(self, status: int, message: str) -> None:
        """Makes the next `POST /runs` answer `status` with `message`."""
        self._fail_next_run = (status, message)

    def add_experiment(self, display_name: str, namespace: str = "") -> dict[str, Any]:
        """Creates an experiment as if an earlier client had."""
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": display_name,
            "namespace": namespace,
            "storage_state": "AVAILABLE",
        }
        self.experiments[display_name] = experiment
        return experiment

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "GET" and path == f"{_KFP_API}/healthz":
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if method == "GET" and path == f"{_KFP_API}/experiments":
            wanted = None
            for predicate in json.loads(query.get("filter", ["{}"])[0]).get("predicates", []):
                if predicate.get("key") == "display_name" and predicate.get("operation") == "EQUALS":
                    wanted = predicate.get("stringValue", predicate.get("string_value"))
            found = [e for name, e in self.experiments.items() if wanted is None or name == wanted]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == f"{_KFP_API}/experiments":
            errors = kfp_api_errors(body, "V2beta1Experiment", "experiment")
            if errors:
                return 400, {"error": "; ".join(errors), "code": 3}
            if not body.get("display_name"):
                return 400, {"error": "experiment display_name is required", "code": 3}
            return 200, self.add_experiment(body["display_name"], body.get("namespace") or "")
        if method == "POST" and path == f"{_KFP_API}/runs":
            if self._fail_next_run is not None:
                status, message = self._fail_next_run
                self._fail_next_run = None
                return status, {"error": message, "message": message, "code": 3}
            errors = kfp_api_errors(body, "V2beta1Run", "run")
            if not errors and not body.get("pipeline_spec"):
                errors = ["run.pipeline_spec is required"]
            errors = errors or pipeline_spec_errors(body["pipeline_spec"], "run.pipeline_spec")
            if errors:
                return 400, {"error": "; ".join(errors), "message": "; ".join(errors), "code": 3}
            run = dict(body, run_id=str(uuid.uuid4()), state="PENDING")
            self.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error": f"{method} {path} is not served by the fake KFP API", "code": 5}


class FakeVertexServer(JsonServer):
    """The fake Vertex AI pipeline-job API (REST v1). Use as a context manager; `url` is its base URL."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, dict[str, Any]] = {}  # resource name -> job as created
        self._fail_next_create: tuple[int, str, str] | None = None

    def fail_next_create(self, code: int, status: str, message: str) -> None:
        """Makes the next job creation answer an error (`code`, e.g. 403, `status`, e.g. PERMISSION_DENIED)."""
        self._fail_next_create = (code, status, message)

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        match = _VERTEX_CREATE_RE.match(path)
        if method == "POST" and match and isinstance(body, dict):
            if self._fail_next_create is not None:
                code, status, message = self._fail_next_create
                self._fail_next_create = None
                return code, {"error": {"code": code, "status": status, "message": message}}
            job_id = query.get("pipelineJobId", [""])[0]
            if not job_id or not body.get("pipelineSpec"):
                return 400, {"error": {"code": 400, "message": "pipelineJobId and pipelineSpec are required"}}
            try:
                json_format.ParseDict(body, aiplatform_v1.PipelineJob()._pb)
            except json_format.ParseError as error:
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(error)}}
            errors = pipeline_spec_errors(body["pipelineSpec"], "pipelineJob.pipelineSpec")
            if errors:
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": errors[0]}}
            name = f"projects/{match['project']}/locations/{match['location']}/pipelineJobs/{job_id}"
            job = dict(body, name=name, state="PIPELINE_STATE_PENDING")
            self.jobs[name] = job
            return 200, job
        return 404, {"error": {"code": 404, "message": f"{method} {path} is not served by the fake Vertex API"}}
