"""What Vertex AI receives when a compiled custom-job step runs: GCPC's launcher, run here against a loopback
stand-in of Vertex's JobService.

A custom-job step compiled by google-cloud-pipeline-components (GCPC) runs GCPC's launcher container
(`google_cloud_pipeline_components.container.v1.custom_job.launcher`) with `--payload <CustomJob JSON>` and
placeholders in its arguments. `launch(...)` does what a Vertex run does with such a step:

1. Resolves the step's input parameters as the run would: constants and defaults from the compiled IR, values
   of pipeline inputs and upstream outputs from `runtime`.
2. Substitutes the executor's placeholders as Vertex's backend does: `{{$.inputs.parameters['x']}}` becomes the
   text of a STRING value and the JSON of any other value (written as Go's protojson writes a
   `google.protobuf.Value`: a whole number without a fraction, `1`, not `1.0`); then the run-level placeholders
   (`{{$.pipeline_google_cloud_project_id}}`, `..._location}}`, `..._persistent_resource_id}}`: empty) and
   `{{$.json_escape[1]}}`, the task's executor input escaped once for the JSON string it sits in (the argument
   GCPC gives the wrapped component's container). An unresolved placeholder is an error.
3. Runs GCPC's own launcher code on the result: its argument parser, `insert_system_labels_into_payload`,
   `JobRemoteRunner.create_job` (which removes empty fields and writes `gcp_resources`) and
   `create_custom_job_with_client`, with the real `aiplatform_v1.JobServiceClient` over REST to `FakeJobService`.

`FakeJobService` parses each CustomJob it receives strictly, twice: `json_format.Parse` into the
`aiplatform_v1.CustomJob` protobuf without `ignore_unknown_fields`, and proto-plus `CustomJob.from_json`; a
field Vertex does not know or a value of the wrong type is a 400 INVALID_ARGUMENT (and fails the test).

A compiled `ModelUploadOp` step runs the same way through GCPC's upload launcher (`upload_model`): its
`Concat`/`IfPresent` argument placeholders resolved as Vertex resolves them, the executor input holding the step's
input artifacts, then GCPC's `remote_runner.upload_model` (which builds the request, creates the long-running
operation, polls it and writes the `VertexModel` output), its HTTPS calls to `<location>-aiplatform.googleapis.com`
sent to `FakeModelService` instead. That service parses each `models:upload` body strictly into
`aiplatform_v1.UploadModelRequest` and answers with a finished operation.
"""

import json
import re
import types
from typing import Any, Dict, List, Mapping, Optional, Tuple

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from google_cloud_pipeline_components.container.v1.custom_job import remote_runner
from google_cloud_pipeline_components.container.v1.gcp_launcher import job_remote_runner
from google_cloud_pipeline_components.container.v1.gcp_launcher.utils import parser_util
from kfp.pipeline_spec import pipeline_spec_pb2

from tfpipe.pipelines import vertex
from tests.support.kfp_fake_server import JsonServer

_CREATE_RE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs$")
_INPUT = re.compile(r"\{\{\$\.inputs\.parameters\['(?P<name>[^']+)'\]\}\}")
_OUTPUT_FILE = re.compile(r"\{\{\$\.outputs\.parameters\['(?P<name>[^']+)'\]\.output_file\}\}")
JSON_ESCAPED_EXECUTOR_INPUT = "{{$.json_escape[1]}}"


def parse_strictly(message_class: Any, body: Any) -> Tuple[Any, Optional[Tuple[int, Any]]]:
    """`body` parsed into the proto-plus `message_class` twice (protobuf's `json_format.Parse` without
    `ignore_unknown_fields`, and `from_json`), or Vertex's 400 INVALID_ARGUMENT answer for what it would refuse."""
    try:
        json_format.Parse(json.dumps(body), message_class.pb(message_class()))
        return message_class.from_json(json.dumps(body)), None
    except (json_format.ParseError, ValueError, TypeError) as error:
        return None, (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(error)}})


class FakeJobService(JsonServer):
    """Vertex AI's JobService (REST v1), `customJobs.create` only; `jobs` holds each CustomJob as parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: List[aiplatform_v1.CustomJob] = []

    def client(self) -> aiplatform_v1.JobServiceClient:
        """The real GAPIC client, over REST, to this server."""
        return aiplatform_v1.JobServiceClient(
            credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=self.url)
        )

    def _answer(self, method: str, path: str, query: Dict[str, List[str]], body: Any) -> Tuple[int, Any]:
        match = _CREATE_RE.match(path)
        if method != "POST" or not match:
            return 404, {"error": {"code": 404, "message": f"{method} {path} is not served by the fake JobService"}}
        job, refused = parse_strictly(aiplatform_v1.CustomJob, body)
        if refused:
            return refused
        job.name = f"projects/{match['project']}/locations/{match['location']}/customJobs/{len(self.jobs) + 1}"
        self.jobs.append(job)
        return 200, json.loads(aiplatform_v1.CustomJob.to_json(job))


def find_task(spec: Mapping[str, Any], task: str, within: Optional[str] = None
              ) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """The task named `task` in the compiled pipeline (in the DAG of component `within`, or anywhere), its
    component and its executor's container."""
    if within is not None:
        dags = [spec["components"][within]["dag"]]
    else:
        dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    found = [dag["tasks"][task] for dag in dags if task in dag.get("tasks", {})]
    if len(found) != 1:
        raise KeyError(f"task {task!r} found {len(found)} times in the pipeline")
    component = spec["components"][found[0]["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    return found[0], component, container


def go_json(value: Any) -> str:
    """`value` as JSON, numbers as Go's protojson writes a `google.protobuf.Value` (whole numbers without `.0`)."""

    def whole(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [whole(item) for item in v]
        if isinstance(v, dict):
            return {key: whole(item) for key, item in v.items()}
        return v

    return json.dumps(whole(value))


def task_inputs(task: Mapping[str, Any], component: Mapping[str, Any], runtime: Mapping[str, Any]) -> Dict[str, Any]:
    """The value of every input parameter of `task`: its constant, `runtime[name]` for a value that comes from the
    pipeline's inputs or an upstream task, else the component's default."""
    given = task.get("inputs", {}).get("parameters", {})
    values = {}
    for name, definition in component["inputDefinitions"]["parameters"].items():
        source = given.get(name)
        if source is not None and "runtimeValue" in source:
            values[name] = source["runtimeValue"]["constant"]
        elif source is not None:
            if name not in runtime:
                raise KeyError(f"input {name!r} comes from {source}; give its value in `runtime`")
            values[name] = runtime[name]
        elif "defaultValue" in definition:
            values[name] = definition["defaultValue"]
        elif not definition.get("isOptional"):
            raise KeyError(f"input {name!r} has no value")
    return values


def executor_input(component: Mapping[str, Any], values: Mapping[str, Any], root: str) -> str:
    """The wrapped component's `ExecutorInput` (KFP's proto) as JSON: the parameter values its program reads
    (those of the job itself, `vertex.gcpc_job_interface()`, left out) and where its outputs go."""
    job_own = vertex.gcpc_job_interface()
    message = pipeline_spec_pb2.ExecutorInput()
    for name, value in values.items():
        if name not in job_own:
            json_format.ParseDict(json.loads(go_json(value)), message.inputs.parameter_values[name])
    outputs = component.get("outputDefinitions", {})
    for name, artifact in outputs.get("artifacts", {}).items():
        entry = message.outputs.artifacts[name].artifacts.add()
        entry.type.CopyFrom(json_format.ParseDict(artifact["artifactType"], pipeline_spec_pb2.ArtifactTypeSchema()))
        entry.uri = f"{root}/{name}"
    for name in set(outputs.get("parameters", {})) - job_own:
        message.outputs.parameters[name].output_file = f"/tmp/outputs/{name}/data"
    message.outputs.output_file = "/tmp/kfp_outputs/output_metadata.json"
    return json_format.MessageToJson(message, indent=None)


def resolve_args(container: Mapping[str, Any], values: Mapping[str, Any], *, project: str, location: str,
                 executor_input_json: str, gcp_resources: str) -> List[str]:
    """The launcher container's arguments with every placeholder resolved as Vertex resolves them."""
    run_level = {
        "{{$.pipeline_google_cloud_project_id}}": project,
        "{{$.pipeline_google_cloud_location}}": location,
        "{{$.pipeline_persistent_resource_id}}": "",
        "{{$.pipeline_service_account}}": f"runner@{project}.iam.gserviceaccount.com",
        JSON_ESCAPED_EXECUTOR_INPUT: json.dumps(executor_input_json)[1:-1],
    }
    def substitute(match: re.Match) -> str:
        if match["name"] not in values:
            raise ValueError(f"input {match['name']!r} has no value (optional, without a default): nothing fills its "
                             "placeholder in the launcher's payload")
        given = values[match["name"]]
        return given if isinstance(given, str) else go_json(given)

    resolved = []
    for arg in container["args"]:
        text = _INPUT.sub(substitute, arg)
        text = _OUTPUT_FILE.sub(lambda m: gcp_resources, text)
        for placeholder, value in run_level.items():
            text = text.replace(placeholder, value)
        if "{{$" in text:
            raise ValueError(f"unresolved placeholder in launcher argument: {text[:300]}")
        resolved.append(text)
    return resolved


def launch(spec: Mapping[str, Any], task: str, service: FakeJobService, tmp_path: Any, *,
           runtime: Optional[Mapping[str, Any]] = None, within: Optional[str] = None, project: str = "proj",
           location: str = "us-central1") -> aiplatform_v1.CustomJob:
    """Runs the compiled custom-job step `task` (in component `within`) as Vertex would, through GCPC's launcher,
    against `service`; `runtime` holds the values of inputs that come from the pipeline's inputs or other tasks.

    Returns:
        The CustomJob the service received (parsed strictly).
    """
    step, component, container = find_task(spec, task, within)
    assert container["command"][-1] == "google_cloud_pipeline_components.container.v1.custom_job.launcher"
    values = task_inputs(step, component, runtime or {})
    gcp_resources = str(tmp_path / f"{task}-gcp_resources.json")
    args = resolve_args(container, values, project=project, location=location, gcp_resources=gcp_resources,
                        executor_input_json=executor_input(component, values, f"gs://root/{task}"))
    _, parsed = parser_util.parse_default_args(args)  # What the launcher's `main` parses.
    assert parsed.type == "CustomJob"
    runner = _runner(service, parsed.project, parsed.location, parsed.gcp_resources)
    before = len(service.jobs)
    runner.create_job(remote_runner.create_custom_job_with_client,
                      remote_runner.insert_system_labels_into_payload(parsed.payload))
    assert len(service.jobs) == before + 1
    return service.jobs[-1]


def _runner(service: FakeJobService, project: str, location: str, gcp_resources: str
            ) -> job_remote_runner.JobRemoteRunner:
    """GCPC's `JobRemoteRunner` as its `__init__` (GCPC 2.22) sets it up, but with `service`'s client: the real
    one would reach `<location>-aiplatform.googleapis.com` with the machine's credentials."""
    runner = job_remote_runner.JobRemoteRunner.__new__(job_remote_runner.JobRemoteRunner)
    runner.job_type, runner.project, runner.location, runner.gcp_resources = "CustomJob", project, location, gcp_resources
    runner.job_client = service.client()
    runner.job_uri_prefix = f"https://{location}-aiplatform.googleapis.com/v1/"
    runner.poll_job_name = ""
    return runner


# --------------------------------------------------------------------------------------------------------------
# Model Registry: GCPC's ModelUploadOp.
# --------------------------------------------------------------------------------------------------------------

_UPLOAD_RE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/models:upload$")
_OPERATION_RE = re.compile(r"^/v1/(?P<name>projects/[^/]+/locations/[^/]+/models/[^/]+/operations/[0-9]+)$")
_ARTIFACT_METADATA = re.compile(r"\{\{\$\.inputs\.artifacts\['(?P<name>[^']+)'\]\.metadata\['(?P<key>[^']+)'\]\}\}")


class FakeModelService(JsonServer):
    """Vertex AI's ModelService (REST v1): `models.upload` and the operation it starts; `uploads` holds each
    `UploadModelRequest` as parsed (with the `parent` of its URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: List[aiplatform_v1.UploadModelRequest] = []
        self._operations: Dict[str, Any] = {}

    def _answer(self, method: str, path: str, query: Dict[str, List[str]], body: Any) -> Tuple[int, Any]:
        upload, operation = _UPLOAD_RE.match(path), _OPERATION_RE.match(path)
        if method == "POST" and upload:
            request, refused = parse_strictly(aiplatform_v1.UploadModelRequest, body)
            if refused:
                return refused
            request.parent = f"projects/{upload['project']}/locations/{upload['location']}"
            self.uploads.append(request)
            model = request.parent_model or f"{request.parent}/models/{len(self.uploads)}"
            name = f"{model}/operations/{len(self.uploads)}"
            version = str(len(self.uploads))
            response = aiplatform_v1.UploadModelResponse(model=model, model_version_id=version)
            self._operations[name] = {
                "name": name, "done": True,
                "response": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                             **json.loads(aiplatform_v1.UploadModelResponse.to_json(response))},
            }
            return 200, {"name": name, "done": False}
        if method == "GET" and operation and operation["name"] in self._operations:
            return 200, self._operations[operation["name"]]
        return 404, {"error": {"code": 404, "message": f"{method} {path} is not served by the fake ModelService"}}


def _placeholder_text(text: str, values: Mapping[str, Any], artifacts: Mapping[str, Mapping[str, Any]],
                      run_level: Mapping[str, str]) -> str:
    def parameter(match: re.Match) -> str:
        given = values[match["name"]]
        return given if isinstance(given, str) else go_json(given)

    text = _INPUT.sub(parameter, text)
    text = _ARTIFACT_METADATA.sub(lambda m: str(artifacts[m["name"]]["metadata"][m["key"]]), text)
    for placeholder, value in run_level.items():
        text = text.replace(placeholder, value)
    return text


def resolve_structured_args(container: Mapping[str, Any], values: Mapping[str, Any],
                            artifacts: Mapping[str, Mapping[str, Any]], run_level: Mapping[str, str]) -> List[str]:
    """A container's arguments with KFP's `{"Concat": [...]}` and `{"IfPresent": {...}}` placeholders and the plain
    ones resolved, as Vertex resolves them (an input is present when it has a value or an artifact)."""

    def resolve(item: Any) -> List[str]:
        if isinstance(item, str) and item.startswith('{"'):
            item = json.loads(item)
        if isinstance(item, dict) and "Concat" in item:
            return ["".join(part for piece in item["Concat"] for part in resolve(piece))]
        if isinstance(item, dict) and "IfPresent" in item:
            branch = item["IfPresent"]
            present = branch["InputName"] in values or branch["InputName"] in artifacts
            return [part for piece in branch.get("Then" if present else "Else", []) for part in resolve(piece)]
        text = _placeholder_text(item, values, artifacts, run_level)
        if "{{$" in text:
            raise ValueError(f"unresolved placeholder in launcher argument: {text[:300]}")
        return [text]

    return [part for arg in container["args"] for part in resolve(arg)]


def upload_executor_input(component: Mapping[str, Any], values: Mapping[str, Any],
                          artifacts: Mapping[str, Mapping[str, Any]], tmp_path: Any) -> str:
    """The ModelUploadOp step's `ExecutorInput`: its parameters, its input artifacts, where its outputs go."""
    message = pipeline_spec_pb2.ExecutorInput()
    for name, value in values.items():
        json_format.ParseDict(json.loads(go_json(value)), message.inputs.parameter_values[name])
    definitions = component["inputDefinitions"].get("artifacts", {})
    for name, artifact in artifacts.items():
        entry = message.inputs.artifacts[name].artifacts.add()
        entry.type.CopyFrom(json_format.ParseDict(definitions[name]["artifactType"],
                                                  pipeline_spec_pb2.ArtifactTypeSchema()))
        entry.uri = artifact["uri"]
        entry.metadata.update(artifact["metadata"])
    for name, artifact in component["outputDefinitions"].get("artifacts", {}).items():
        entry = message.outputs.artifacts[name].artifacts.add()
        entry.type.CopyFrom(json_format.ParseDict(artifact["artifactType"], pipeline_spec_pb2.ArtifactTypeSchema()))
        entry.uri = f"gs://root/model-upload/{name}"
    message.outputs.output_file = str(tmp_path / "upload_executor_output.json")
    return json_format.MessageToJson(message, indent=None)


def upload_model(spec: Mapping[str, Any], task: str, service: FakeModelService, tmp_path: Any, monkeypatch: Any, *,
                 runtime: Mapping[str, Any], artifacts: Mapping[str, Mapping[str, Any]], within: Optional[str] = None,
                 project: str = "proj", location: str = "us-central1") -> Dict[str, Any]:
    """Runs the compiled ModelUploadOp step `task` as Vertex would, through GCPC's upload launcher, against `service`.

    Args:
        runtime: Values of its inputs that come from other tasks (e.g. the labels the registration step made).
        artifacts: Its input artifacts (`uri`, `metadata`) by input name, as the upstream steps wrote them.
        monkeypatch: pytest's, to send GCPC's HTTPS calls (`requests` in its LRO runner) to `service`, with a token,
            and to poll without GCPC's 20 s wait.

    Returns:
        The executor output GCPC wrote (the `VertexModel` artifact of the registered version).
    """
    import google.auth
    import google.oauth2.credentials
    import requests
    from google_cloud_pipeline_components.container.v1.gcp_launcher import lro_remote_runner
    from google_cloud_pipeline_components.container.v1.model.upload_model import launcher

    step, component, container = find_task(spec, task, within)
    assert container["command"][-1] == "google_cloud_pipeline_components.container.v1.model.upload_model.launcher"
    run_level = {"{{$.pipeline_google_cloud_project_id}}": project, "{{$.pipeline_google_cloud_location}}": location,
                 "{{$.pipeline_job_uuid}}": "job-7",
                 "{{$.outputs.parameters['gcp_resources'].output_file}}": str(tmp_path / "upload-gcp_resources.json")}
    # Run-level placeholders in constants and defaults (the `project` default, a `location` constant) are filled.
    values = {name: _placeholder_text(value, {}, {}, run_level) if isinstance(value, str) else value
              for name, value in task_inputs(step, component, runtime).items()}
    executor_input = upload_executor_input(component, values, artifacts, tmp_path)
    run_level["{{$}}"] = executor_input
    args = resolve_structured_args(container, values, artifacts, run_level)
    parsed = launcher._parse_args(args)  # What the launcher's `main` parses.
    assert parsed.pop("type") == "UploadModel"

    host = f"https://{parsed['location']}-aiplatform.googleapis.com"
    redirect = types.SimpleNamespace(**{verb: (lambda verb: lambda url, **kw: getattr(requests, verb)(
        url.replace(host, service.url), **kw))(verb) for verb in ("get", "post")})
    monkeypatch.setattr(lro_remote_runner, "requests", redirect)
    monkeypatch.setattr(lro_remote_runner, "_POLLING_INTERVAL_IN_SECONDS", 0)  # The operation is polled once, at once.
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (google.oauth2.credentials.Credentials("t"), project))
    from google_cloud_pipeline_components.container.v1.model.upload_model import remote_runner as upload_runner

    upload_runner.upload_model(type="UploadModel", **parsed)
    with open(tmp_path / "upload_executor_output.json") as f:
        return json.load(f)
