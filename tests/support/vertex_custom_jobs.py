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
"""

import json
import re
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
        try:
            json_format.Parse(json.dumps(body), aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob()))
            job = aiplatform_v1.CustomJob.from_json(json.dumps(body))
        except (json_format.ParseError, ValueError, TypeError) as error:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(error)}}
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
