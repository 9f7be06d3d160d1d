"""A loopback stand-in for the Kubernetes API of a cluster running the Kubeflow Training Operator v1 (TFJobs).

`FakeKubernetesApi` answers what `kubeflow.training.TrainingClient` 1.9 sends for TFJobs:

* ``POST   /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs``          (create; 409 when the name is taken),
* ``GET    /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs/<name>``   (get; 404 when absent),
* ``DELETE /apis/kubeflow.org/v1/namespaces/<ns>/tfjobs/<name>``   (delete; 404 when absent),

with Kubernetes `Status` objects for errors. Every request body is checked against the real schema, the OpenAPI
types of the Training Operator SDK's models (`KubeflowOrgV1TFJob` and the Kubernetes models it nests, such as
`V1PodTemplateSpec`; `V1DeleteOptions` for a delete): a key the type does not have, a value of the wrong JSON
type or a missing required field is answered with 422 Invalid and recorded in `schema_errors`.

A job's status follows a script: each GET of a job moves it to the next state of `script` (None: only the
`Created` condition), so a test decides when the job runs, succeeds or fails. `calls` lists `get`, `create`
and `delete` in order; `fail_next` makes the next request of a method fail. The server binds 127.0.0.1 on a free port (see `kfp_fake_server.JsonServer`).
"""

import copy
import re
from typing import Any, Dict, List, Optional

from kubeflow.training import ApiClient, TrainingClient, models
from kubeflow.training.utils import utils as sdk_utils
from kubernetes import client as k8s

from tests.support.kfp_fake_server import JsonServer

_JOB_PATH = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/(?P<ns>[^/]+)/tfjobs(?:/(?P<name>[^/]+))?$")
_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "datetime": (str,),
               "date": (str,)}


def schema_errors(value: Any, openapi_type: str, path: str = "$") -> List[str]:
    """What in `value` (Kubernetes JSON) does not fit `openapi_type`, an SDK model name or an OpenAPI type string.

    Unknown keys, wrong JSON types, and (through the SDK's own deserialiser, as `TrainingClient` reads objects)
    missing required fields.
    """
    errors = _walk(value, openapi_type, path)
    if not errors and openapi_type[:1].isupper():
        try:
            ApiClient().deserialize(sdk_utils.FakeResponse(value), openapi_type)
        except ValueError as error:
            errors.append(f"{path}: {error}")
    return errors


def _walk(value: Any, openapi_type: str, path: str) -> List[str]:
    if value is None or openapi_type == "object":
        return []
    if openapi_type.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        return [e for i, item in enumerate(value) for e in _walk(item, openapi_type[5:-1], f"{path}[{i}]")]
    if openapi_type.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        inner = openapi_type[5:-1].split(", ", 1)[1]
        return [e for key, item in value.items() for e in _walk(item, inner, f"{path}.{key}")]
    if openapi_type in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[openapi_type]) and not (openapi_type != "bool" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {openapi_type}, got {value!r}"]
    model = getattr(models, openapi_type)
    if not isinstance(value, dict):
        return [f"{path}: expected a {openapi_type} object, got {value!r}"]
    attributes = {json_name: name for name, json_name in model.attribute_map.items()}
    errors = [f"{path}.{key}: not a field of {openapi_type}" for key in value if key not in attributes]
    for key, item in value.items():
        if key in attributes:
            errors += _walk(item, model.openapi_types[attributes[key]], f"{path}.{key}")
    return errors


def _status(code: int, reason: str, message: str) -> Dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class FakeKubernetesApi(JsonServer):
    """The fake API server. Use as a context manager; `training_client(namespace)` is a client bound to it."""

    def __init__(self, script: Optional[List[Optional[str]]] = None) -> None:
        super().__init__()
        self.jobs: Dict[tuple, Dict[str, Any]] = {}
        self.script = list(script or [])
        self.calls: List[str] = []
        self.schema_errors: List[str] = []
        self._failures: Dict[str, tuple] = {}

    def configuration(self) -> k8s.Configuration:
        """A Kubernetes client configuration for this server."""
        configuration = k8s.Configuration()
        configuration.host = self.url
        return configuration

    def training_client(self, namespace: str = "default") -> TrainingClient:
        """The Training Operator SDK's client, talking to this server."""
        return TrainingClient(client_configuration=self.configuration(), namespace=namespace, job_kind="TFJob")

    def fail_next(self, method: str, code: int, reason: str, message: str) -> None:
        """Answers the next `method` request with this error `Status` (e.g. 403 Forbidden: RBAC)."""
        self._failures[method] = (code, reason, message)

    def add_job(self, job: Dict[str, Any]) -> None:
        """Puts a TFJob (Kubernetes JSON) on the server, as if an earlier attempt had created it."""
        self.jobs[(job["metadata"]["namespace"], job["metadata"]["name"])] = copy.deepcopy(job)

    @staticmethod
    def with_state(job: Dict[str, Any], state: Optional[str]) -> Dict[str, Any]:
        """`job` with the conditions of `state` (None: just created), as the operator writes them."""
        job = copy.deepcopy(job)
        conditions = [{"type": "Created", "status": "True", "reason": "TFJobCreated"}]
        if state:
            conditions.append({"type": state, "status": "True", "reason": f"TFJob{state}", "message": f"it {state}"})
        job["status"] = {"conditions": conditions}
        return job

    def _invalid(self, kind: str, body: Any, model: str) -> Optional[Dict[str, Any]]:
        errors = schema_errors(body, model)
        self.schema_errors += errors
        return _status(422, "Invalid", f"{kind} is invalid: {'; '.join(errors)}") if errors else None

    def _answer(self, method: str, path: str, query: Dict[str, List[str]], body: Any) -> tuple:
        match = _JOB_PATH.match(path)
        if not match:
            return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace, name = match["ns"], match["name"]
        if method in self._failures:
            self.calls.append({"GET": "get", "POST": "create", "DELETE": "delete"}.get(method, method))
            code, reason, message = self._failures.pop(method)
            return code, _status(code, reason, message)
        if method == "POST" and name is None:
            self.calls.append("create")
            invalid = self._invalid("TFJob", body, "KubeflowOrgV1TFJob")
            if invalid:
                return 422, invalid
            metadata = body.get("metadata") or {}
            if (body.get("apiVersion"), body.get("kind")) != ("kubeflow.org/v1", "TFJob"):
                return 400, _status(400, "BadRequest", "apiVersion/kind must be kubeflow.org/v1 TFJob")
            if metadata.get("namespace", namespace) != namespace or not metadata.get("name"):
                return 400, _status(400, "BadRequest", "the namespace of the object does not match the request")
            key = (namespace, metadata["name"])
            if key in self.jobs:
                return 409, _status(409, "AlreadyExists", f'tfjobs.kubeflow.org "{key[1]}" already exists')
            self.jobs[key] = copy.deepcopy(body)
            return 201, body
        if name is None:
            return 405, _status(405, "MethodNotAllowed", f"{method} {path}")
        key = (namespace, name)
        missing = _status(404, "NotFound", f'tfjobs.kubeflow.org "{name}" not found')
        if method == "GET":
            self.calls.append("get")
            if key not in self.jobs:
                return 404, missing
            if self.script:
                self.jobs[key] = self.with_state(self.jobs[key], self.script.pop(0))
            return 200, self.jobs[key]
        if method == "DELETE":
            self.calls.append("delete")
            invalid = self._invalid("DeleteOptions", body or {}, "V1DeleteOptions")
            if invalid:
                return 422, invalid
            if self.jobs.pop(key, None) is None:
                return 404, missing
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return 405, _status(405, "MethodNotAllowed", f"{method} {path}")
