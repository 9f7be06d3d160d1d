"""Submitting compiled pipelines: to a loopback KFP API (what kfp.Client sends) and to Vertex AI (dry run)."""

import json
import logging
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from tfpipe.pipelines import submit
from tfpipe.pipelines.backends import apply_profile
from tfpipe.pipelines.profiles import parse_profile
from tfpipe.pipelines.submit import SubmitError, SubmitResult, submit_to_kfp, submit_to_vertex
from tests.support.kfp_fake_server import FakeKfpServer, FakeVertexServer

TOKEN = "tok-3c1f-very-secret"
SERVICE_ACCOUNT = "trainer@my-project-1.iam.gserviceaccount.com"


@dsl.component(base_image="python:3.11")
def train_step(steps: int, model_dir: str, learning_rate: float) -> str:
    return f"{model_dir}@{steps}:{learning_rate}"


@dsl.component(base_image="python:3.11")
def export_step(checkpoint: str, enabled: bool) -> str:
    return checkpoint if enabled else ""


def _compile(tmp_path: Path, *, backend: str = "vertex", name: str = "tiny-train") -> Path:
    @dsl.pipeline(name=name)
    def pipeline(steps: int, model_dir: str, learning_rate: float = 0.1, export: bool = True):
        train = train_step(steps=steps, model_dir=model_dir, learning_rate=learning_rate)
        exported = export_step(checkpoint=train.output, enabled=export)
        if backend == "gke":
            apply_profile(train, parse_profile("cpu=4,memory=16G,gpu=l4:1,spot", step="train"), backend="gke")
            apply_profile(exported, parse_profile("cpu=1", step="export"), backend="gke")

    path = tmp_path / f"{name}-{backend}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    """A PipelineSpec dict as its proto serialises (default values left out)."""
    return json_format.MessageToDict(json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()))


def _normalised_spec(path: Path, *, enable_caching: bool | None = None) -> dict[str, Any]:
    """The package's PipelineSpec as a client serialises it (proto -> JSON dict), with a run-level caching override."""
    spec = json_format.ParseDict(next(yaml.safe_load_all(path.read_text())), pipeline_spec_pb2.PipelineSpec())
    if enable_caching is not None:
        for task in spec.root.dag.tasks.values():
            task.caching_options.enable_cache = enable_caching
    return json_format.MessageToDict(spec)


@pytest.fixture
def no_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails any connection that is not to the loopback interface (nothing may reach a real service)."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test blocked a connection to {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def kfp_client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keeps kfp.Client away from the user's ~/.config/kfp/context.json and KF_PIPELINES_* variables."""
    import kfp.client.client as client_module

    monkeypatch.setattr(client_module.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for variable in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_ID",
        "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET",
    ):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def kfp_server(kfp_client_env: None, no_outside_network: None):
    with FakeKfpServer() as server:
        yield server


# ----------------------------------------------------------------------------------------------------------------
# Open-source KFP.
# ----------------------------------------------------------------------------------------------------------------


def test_submit_to_kfp_sends_the_spec_and_parameters_and_returns_the_run(
    kfp_server: FakeKfpServer, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    package = _compile(tmp_path)
    arguments = {"steps": 500, "model_dir": "gs://bucket/runs/1", "learning_rate": 0.05}

    result = submit_to_kfp(
        package,
        host=kfp_server.url + "/",
        arguments=arguments,
        run_name="nightly-1",
        experiment_name="digits",
        enable_caching=False,
        service_account="pipeline-runner",
        existing_token=TOKEN,
    )

    assert kfp_server.calls() == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    healthz, lookup, create_experiment, create_run = kfp_server.requests
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in kfp_server.requests)
    assert '"stringValue": "digits"' in lookup.query["filter"][0]
    assert create_experiment.body["display_name"] == "digits"
    experiment_id = kfp_server.experiments["digits"]["experiment_id"]

    run = create_run.body
    assert run["display_name"] == "nightly-1"
    assert run["experiment_id"] == experiment_id
    assert run["service_account"] == "pipeline-runner"
    assert run["runtime_config"]["parameters"] == arguments
    # The package's PipelineSpec, every task's caching overridden by enable_caching=False.
    assert run["pipeline_spec"] == _normalised_spec(package, enable_caching=False)
    assert {
        t["cachingOptions"].get("enableCache", False) for t in run["pipeline_spec"]["root"]["dag"]["tasks"].values()
    } == {False}

    assert result == SubmitResult(
        run_id=kfp_server.runs[result.run_id]["run_id"], url=f"{kfp_server.url}/#/runs/details/{result.run_id}"
    )
    printed = capsys.readouterr()
    assert f"Run details: {kfp_server.url}/#/runs/details/{result.run_id}" in printed.out
    # The token reaches the server only.
    assert TOKEN not in printed.out + printed.err + caplog.text + repr(result)


def test_a_gke_package_sends_its_kubernetes_platform_spec(kfp_server: FakeKfpServer, tmp_path: Path):
    package = _compile(tmp_path, backend="gke")
    submit_to_kfp(package, host=kfp_server.url, arguments={"steps": 1, "model_dir": "/tmp/run"})

    body = kfp_server.requests[-1].body
    assert body["display_name"].startswith(package.name + " ")  # kfp's default run name
    assert body["pipeline_spec"]["pipeline_spec"] == _normalised_spec(package)
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-train-step"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-spot": "true",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in executors["exec-train-step"][
        "tolerations"
    ]
    assert body["runtime_config"]["parameters"] == {"steps": 1, "model_dir": "/tmp/run"}
    assert "authorization" not in kfp_server.requests[-1].headers


def test_an_existing_experiment_is_reused(kfp_server: FakeKfpServer, tmp_path: Path):
    experiment = kfp_server.add_experiment("Default")
    result = submit_to_kfp(_compile(tmp_path), host=kfp_server.url, arguments={"steps": 2, "model_dir": "m"})
    assert ("POST", "/apis/v2beta1/experiments") not in kfp_server.calls()
    assert kfp_server.runs[result.run_id]["experiment_id"] == experiment["experiment_id"]


def test_a_refused_run_is_a_submit_error_without_the_token(kfp_server: FakeKfpServer, tmp_path: Path):
    kfp_server.fail_next_run(400, "pipeline spec is invalid: no root")
    with pytest.raises(SubmitError) as caught:
        submit_to_kfp(
            _compile(tmp_path), host=kfp_server.url, arguments={"steps": 2, "model_dir": "m"}, existing_token=TOKEN
        )
    message = str(caught.value)
    assert f"KFP at {kfp_server.url} refused the run: HTTP 400" in message
    assert "pipeline spec is invalid: no root" in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    "options, fragment",
    [
        (
            {"host": "localhost:8080"},
            "host 'localhost:8080' is not an http(s) URL; accepted: e.g. http://localhost:8080",
        ),
        ({"host": "ftp://kfp.example.com"}, "is not an http(s) URL"),
        ({"host": "https://admin:hunter2@kfp.example.com"}, "host https://***@kfp.example.com embeds credentials"),
        ({"host": "http://kfp.example.com/?token=1"}, "has a query or fragment"),
        (
            {"arguments": {"step": 1, "model_dir": "m"}},
            "arguments has unknown parameter 'step'; accepted: export, learning",
        ),
        ({"arguments": {"model_dir": "m"}}, "arguments lacks required parameter(s) steps"),
        (
            {"arguments": {"steps": "10", "model_dir": "m"}},
            "arguments['steps'] = '10' has the wrong type; accepted: an integer",
        ),
        ({"arguments": {"steps": True, "model_dir": "m"}}, "arguments['steps'] = True has the wrong type"),
        (
            {"arguments": {"steps": 1, "model_dir": "m", "export": "yes"}},
            "arguments['export'] = 'yes' has the wrong type; accepted: a boolean",
        ),
        ({"arguments": ["steps"]}, "arguments ['steps'] is not a mapping"),
        ({"namespace": "Team_A"}, "namespace 'Team_A' is invalid; accepted: a Kubernetes namespace name"),
        ({"service_account": "Pipeline Runner"}, "service_account 'Pipeline Runner' is invalid"),
        ({"existing_token": "  "}, "existing_token is empty or not a string"),
        ({"run_name": ""}, "run_name '' is invalid; accepted: a non-empty string"),
        ({"enable_caching": "no"}, "enable_caching 'no' is not a boolean"),
    ],
)
def test_submit_to_kfp_checks_inputs_before_contacting_the_host(
    tmp_path: Path, no_outside_network: None, options: dict, fragment: str
):
    call: dict[str, Any] = {"host": "http://127.0.0.1:9", "arguments": {"steps": 1, "model_dir": "m"}, **options}
    with pytest.raises(ValueError) as caught:
        submit_to_kfp(_compile(tmp_path), **call)
    assert fragment in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_submit_checks_the_package(tmp_path: Path):
    with pytest.raises(ValueError, match=r"package_path '.*missing.yaml' is not a file"):
        submit_to_kfp(tmp_path / "missing.yaml", host="http://127.0.0.1:9")
    (tmp_path / "pipeline.py").write_text("print()")
    (tmp_path / "pipeline.json").write_text("{}")
    with pytest.raises(ValueError, match=r"'.*pipeline.json' has an unsupported suffix; accepted: .* \.yaml, \.yml$"):
        submit_to_kfp(tmp_path / "pipeline.json", host="http://127.0.0.1:9")  # kfp.Client reads YAML only
    with pytest.raises(
        ValueError, match=r"'.*pipeline.py' has an unsupported suffix; accepted: .* \.yaml, \.yml, \.json$"
    ):
        submit_to_vertex(tmp_path / "pipeline.py", project="my-project-1", region="us-central1", pipeline_root="gs://b")
    (tmp_path / "other.yaml").write_text("kind: Deployment\n")
    with pytest.raises(ValueError, match=r"'.*other.yaml' holds no PipelineSpec"):
        submit_to_vertex(tmp_path / "other.yaml", project="my-project-1", region="us-central1", pipeline_root="gs://b")


def test_an_unreachable_host_is_a_submit_error(tmp_path: Path, kfp_client_env: None, no_outside_network: None):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SubmitError, match=rf"KFP at http://127.0.0.1:{port} is unreachable: .*(refused|Errno)"):
        submit_to_kfp(_compile(tmp_path), host=f"http://127.0.0.1:{port}", arguments={"steps": 1, "model_dir": "m"})


# ----------------------------------------------------------------------------------------------------------------
# Vertex AI Pipelines.
# ----------------------------------------------------------------------------------------------------------------


def test_vertex_dry_run_returns_the_request_without_calling_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_outside_network: None
):
    # Application Default Credentials would fail if anything looked for them.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-credentials.json"))
    package = _compile(tmp_path)
    values = {"steps": 1000, "model_dir": "gs://bucket/runs/7", "learning_rate": 0.01, "export": False}

    result = submit_to_vertex(
        package,
        project="my-project-1",
        region="europe-west4",
        pipeline_root="gs://bucket/pipeline-root",
        parameter_values=values,
        service_account=SERVICE_ACCOUNT,
        labels={"team": "ml-infra", "cost_center": "r-and-d", "run": ""},
        enable_caching=False,
        display_name="Nightly digits",
        job_id="nightly-digits-7",
        network="projects/123456789/global/networks/ml-vpc",
        dry_run=True,
    )

    assert result.dry_run and result.run_id == "nightly-digits-7"
    assert result.url == (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/nightly-digits-7"
        "?project=my-project-1"
    )
    request = result.request
    assert request["parent"] == "projects/my-project-1/locations/europe-west4"
    assert request["pipelineJobId"] == "nightly-digits-7"
    job = request["pipelineJob"]
    assert job["displayName"] == "Nightly digits"
    assert job["serviceAccount"] == SERVICE_ACCOUNT
    assert job["network"] == "projects/123456789/global/networks/ml-vpc"
    assert job["labels"] == {"team": "ml-infra", "cost_center": "r-and-d", "run": ""}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/pipeline-root"
    assert job["runtimeConfig"]["parameterValues"] == values
    # The template: the compiled PipelineSpec, with every task's caching turned off by enable_caching=False.
    assert _normalised(job["pipelineSpec"]) == _normalised_spec(package, enable_caching=False)
    assert {t["cachingOptions"]["enableCache"] for t in job["pipelineSpec"]["root"]["dag"]["tasks"].values()} == {False}


def test_vertex_dry_run_defaults(tmp_path: Path, no_outside_network: None):
    package = _compile(tmp_path, name="digits-train")
    result = submit_to_vertex(
        package,
        project="my-project-1",
        region="us-central1",
        pipeline_root="gs://bucket",
        parameter_values={"steps": 3, "model_dir": "gs://bucket/m"},
        dry_run=True,
    )
    job = result.request["pipelineJob"]
    assert job["displayName"] == "digits-train"
    assert result.run_id.startswith("digits-train-") and len(result.run_id) == len("digits-train-") + 14
    assert "serviceAccount" not in job and "labels" not in job and "network" not in job
    assert _normalised(job["pipelineSpec"]) == _normalised_spec(package)
    assert job["runtimeConfig"]["parameterValues"] == {"steps": 3, "model_dir": "gs://bucket/m"}


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"project": "My_Project"}, "project 'My_Project' is not a Google Cloud project id; accepted: 6-30 lowercase"),
        ({"project": "proj"}, "project 'proj' is not a Google Cloud project id"),
        (
            {"region": "us-central1-a"},
            "region 'us-central1-a' is not a Google Cloud region (that looks like a zone; its region is 'us-central1')",
        ),
        ({"region": "US"}, "region 'US' is not a Google Cloud region; accepted: e.g. us-central1"),
        (
            {"pipeline_root": "/tmp/root"},
            "pipeline_root '/tmp/root' is not a Cloud Storage URI; accepted: gs://<bucket>",
        ),
        ({"pipeline_root": "s3://bucket/root"}, "pipeline_root 's3://bucket/root' is not a Cloud Storage URI"),
        (
            {"labels": {"Team": "ml"}},
            "label key 'Team' is invalid; accepted: 1-63 lowercase letters, digits, '_' or '-'",
        ),
        ({"labels": {"1team": "ml"}}, "label key '1team' is invalid"),
        ({"labels": {"k" * 64: "v"}}, "is invalid; accepted: 1-63"),
        ({"labels": {"team": "ML Infra"}}, "label value 'ML Infra' (key 'team') is invalid; accepted: 0-63 lowercase"),
        ({"labels": {"team": 7}}, "label value 7 (key 'team') is invalid"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels has 65 entries; accepted: at most 64"),
        ({"service_account": "trainer"}, "service_account 'trainer' is not a service account email"),
        (
            {"job_id": "Nightly_1"},
            "job_id 'Nightly_1' is invalid; accepted: 1-128 lowercase letters, digits or hyphens",
        ),
        ({"network": "ml-vpc"}, "network 'ml-vpc' is invalid; accepted: projects/<project number>/global/networks/"),
        ({"parameter_values": {"steps": 1.5, "model_dir": "m"}}, "parameter_values['steps'] = 1.5 has the wrong type"),
        ({"parameter_values": {"steps": 1}}, "parameter_values lacks required parameter(s) model_dir"),
        ({"display_name": "x" * 129}, "display_name 'xxx"),
    ],
)
def test_submit_to_vertex_checks_inputs(tmp_path: Path, no_outside_network: None, options: dict, fragment: str):
    call: dict[str, Any] = dict(
        project="my-project-1",
        region="us-central1",
        pipeline_root="gs://bucket/root",
        parameter_values={"steps": 1, "model_dir": "m"},
        dry_run=True,
    )
    with pytest.raises(ValueError) as caught:
        submit_to_vertex(_compile(tmp_path), **{**call, **options})
    assert fragment in str(caught.value)


def test_submit_to_vertex_refuses_a_gke_compiled_package(tmp_path: Path):
    with pytest.raises(ValueError, match=r"has 1 platform document\(s\) .* compiled with --backend vertex"):
        submit_to_vertex(
            _compile(tmp_path, backend="gke"),
            project="my-project-1",
            region="us-central1",
            pipeline_root="gs://bucket",
            parameter_values={"steps": 1, "model_dir": "m"},
            dry_run=True,
        )


def test_submit_to_vertex_without_aiplatform_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import google.cloud

    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", None)  # makes the import fail
    monkeypatch.delattr(google.cloud, "aiplatform", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'tfpipe\[vertex\]'"):
        submit_to_vertex(
            _compile(tmp_path),
            project="my-project-1",
            region="us-central1",
            pipeline_root="gs://bucket",
            parameter_values={"steps": 1, "model_dir": "m"},
            dry_run=True,
        )


def test_submit_to_vertex_sends_the_job_to_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_outside_network: None
):
    from google.auth import credentials as auth_credentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform.utils import gcs_utils

    package = _compile(tmp_path)
    buckets: list[str] = []
    with FakeVertexServer() as server:
        # Point the Vertex client at the loopback API over REST, with anonymous credentials; record the pipeline
        # root bucket check that PipelineJob.submit makes through Cloud Storage.
        config = aiplatform.initializer.global_config
        monkeypatch.setattr(config, "_api_endpoint", server.url)
        monkeypatch.setattr(config, "_api_transport", "rest")
        monkeypatch.setattr(config, "_credentials", auth_credentials.AnonymousCredentials())
        monkeypatch.setattr(
            gcs_utils,
            "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
            lambda output_artifacts_gcs_dir, **_: buckets.append(output_artifacts_gcs_dir),
        )
        call: dict[str, Any] = dict(
            project="my-project-1",
            region="us-central1",
            pipeline_root="gs://bucket/root",
            parameter_values={"steps": 1, "model_dir": "gs://bucket/m"},
            service_account=SERVICE_ACCOUNT,
            labels={"team": "ml"},
            job_id="run-1",
            network="projects/42/global/networks/default",
        )
        result = submit_to_vertex(package, **call)

        assert result == SubmitResult(
            run_id="run-1", url=submit.vertex_console_url(project="my-project-1", region="us-central1", job_id="run-1")
        )
        (create,) = server.requests
        assert (create.method, create.path) == ("POST", "/v1/projects/my-project-1/locations/us-central1/pipelineJobs")
        assert create.query["pipelineJobId"] == ["run-1"]
        job = create.body
        assert job["serviceAccount"] == SERVICE_ACCOUNT
        assert job["network"] == "projects/42/global/networks/default"
        assert job["labels"] == {"team": "ml"}
        assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
        assert job["runtimeConfig"]["parameterValues"] == {"steps": 1, "model_dir": "gs://bucket/m"}
        assert _normalised(job["pipelineSpec"]) == _normalised_spec(package)
        assert buckets == ["gs://bucket/root"]

        server.fail_next_create(403, "PERMISSION_DENIED", "caller lacks aiplatform.pipelineJobs.create")
        with pytest.raises(SubmitError, match=r"refused pipeline job 'run-2' in my-project-1/us-central1: .*lacks"):
            submit_to_vertex(package, **{**call, "job_id": "run-2"})


def _refused_post(url: str, body: dict) -> dict:
    """POSTs `body` as JSON to a fake API and returns its answer, which must be 400."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    return json.loads(refused.value.read())


@pytest.mark.parametrize("path, body, says", [
    ("/apis/v2beta1/runs", {"display_name": "r", "pipeline_spec": {"root": {}}, "runtime_config": {"params": {}}},
     "run.runtime_config.params: not a field of V2beta1RuntimeConfig"),
    ("/apis/v2beta1/runs", {"display_name": "r", "pipeline_spec": {"root": {}}, "state": "DONE"},
     "run.state: 'DONE' is not one of"),
    ("/apis/v2beta1/runs", {"display_name": "r", "pipeline_spec": {"roots": {}}}, 'has no field named "roots"'),
    ("/apis/v2beta1/runs", {"display_name": "r", "pipeline_spec": {"pipeline_spec": {}, "platform": {}}},
     "run.pipeline_spec.platform: neither pipeline_spec nor platform_spec"),
    ("/apis/v2beta1/experiments", {"display_name": 7}, "experiment.display_name: str expected, got int"),
])
def test_the_fake_kfp_api_refuses_what_the_real_one_would(kfp_server: FakeKfpServer, path: str, body: dict,
                                                           says: str):
    answer = _refused_post(kfp_server.url + path, body)
    assert says in answer["error"]


def test_the_fake_vertex_api_refuses_a_job_the_real_one_would():
    with FakeVertexServer() as server:
        for job, says in [({"pipelineSpec": {"root": {}}, "serviceAcount": "sa"}, "serviceAcount"),
                          ({"pipelineSpec": {"roots": {}}}, 'has no field named "roots"')]:
            answer = _refused_post(server.url + "/v1/projects/p/locations/us-central1/pipelineJobs?pipelineJobId=j", job)
            assert says in answer["error"]["message"]


@pytest.mark.parametrize("param, says", [
    ("train_steps=0", "`train_steps` must be a positive integer"),
    ("model_dir=/", "`model_dir` ('/') is a filesystem root"),
    ("task_config={oops", "`task_config` is not valid JSON"),
    ("task=subprocess:run", "`task` ('subprocess:run') is not declared a tfpipe task factory: 'subprocess' is a "
                            "module of Python's standard library"),
    ("task_package=http://example.com/p-1.0-py3-none-any.whl", "`task_package` ('http://example.com/p-1.0-py3-none-"
                                                              "any.whl') has an unsupported scheme"),
    ("profile_steps=1500-1600", "`profile_steps` (1500-1600) ends after `train_steps` (1000)"),  # The compiled 1000.
    (None, "name 'a\\nb' is invalid; accepted: a non-empty string of at most"),  # --run-name, on either target.
])
@pytest.mark.parametrize("target", ["vertex-dry-run", "kfp"])
def test_submit_checks_a_tfpipe_pipelines_values_as_check_inputs_does(tmp_path: Path, no_outside_network: None,
                                                                       capsys, param, says, target):
    from tfpipe.pipelines import cli

    package = tmp_path / "p.yaml"
    backend = "vertex" if target == "vertex-dry-run" else "gke"
    assert cli.main(["compile", "--backend", backend, "--image", "reg/tfpipe:2", "-o", str(package)]) == 0
    capsys.readouterr()
    where = (["--vertex", "--project", "my-project-1", "--region", "us-central1", "--pipeline-root", "gs://bucket/r",
              "--dry-run"] if target == "vertex-dry-run" else ["--host", "http://127.0.0.1:9"])
    given = ["--param", param] if param else ["--run-name", "a\nb"]
    assert cli.main(["submit", str(package), *where, *given]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line, line
