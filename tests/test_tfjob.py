"""Multi-worker training on GKE as a Kubeflow TFJob: the manifest, the launcher's wait, the compiled pipeline.

No cluster: the manifest is checked as data and against the Training Operator SDK's schema, and the launcher's
create/adopt/replace/wait runs through the SDK's `TrainingClient` against a loopback Kubernetes API
(`tests/support/k8s_fake_server.py`, which checks every request body against the SDK's OpenAPI types) on a fake
clock. The pipeline is checked as compiled IR.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2
from kubeflow.training import ApiClient

from tfpipe import checks
from tfpipe.components.train import tfjob as tfjob_train
from tfpipe.components.definitions import TRAIN
from tfpipe.components.train.outputs import TrainResult
from tfpipe.pipelines import placement
from tfpipe.pipelines.profiles import ResourceProfileError, parse_profile
from tfpipe.pipelines.train_eval_export import build_pipeline
from tests.support import k8s_fake_server
from tests.support.k8s_fake_server import FakeKubernetesApi

NASTY_CONFIG = '{"batch_size": 64, "note": "a b; $(rm -rf /) \'q\' \\"dq\\""}'
PROFILE = "cpu=8,memory=32G,gpu=l4:2,spot"


def pods(profile: Any) -> str:
    """The placement JSON the compiled pipeline hands the launcher for `profile`."""
    return placement.tfjob_placement(parse_profile(profile, step="train")).to_json()


TRAIN_INPUTS = dict(task="digits", model_dir="gs://bucket/runs/1", train_steps=1000, task_config=NASTY_CONFIG,
                    steps_per_loop=50, checkpoint_interval=200, max_to_keep=3)


def manifest_object(**overrides: Any):
    train_inputs = {**TRAIN_INPUTS, **{k: v for k, v in overrides.items() if k in TRAIN.names()}}
    kwargs = dict(
        name="tfpipe-train-run-1", namespace="team-a", image="reg.example/tfpipe:1", train_inputs=train_inputs,
        replicas=4, placement=pods(PROFILE), backoff_limit=5, active_deadline_seconds=7200,
        service_account="trainer", secret_env={"wandb": {"api-key": "WANDB_API_KEY"}},
    )
    kwargs.update({k: v for k, v in overrides.items() if k not in TRAIN.names()})
    return tfjob_train.tfjob_manifest(**kwargs)


def manifest(**overrides: Any) -> Dict[str, Any]:
    """The TFJob as the Kubernetes API receives it (the SDK's serialisation of its typed model)."""
    return ApiClient().sanitize_for_serialization(manifest_object(**overrides))


def test_manifest_has_a_chief_and_workers_with_exit_code_restarts_and_a_run_policy():
    job = manifest()
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    assert job["metadata"]["name"] == "tfpipe-train-run-1" and job["metadata"]["namespace"] == "team-a"
    assert job["spec"]["runPolicy"] == {"backoffLimit": 5, "cleanPodPolicy": "Running", "activeDeadlineSeconds": 7200}
    replicas = job["spec"]["tfReplicaSpecs"]
    assert set(replicas) == {"Chief", "Worker"}
    assert (replicas["Chief"]["replicas"], replicas["Worker"]["replicas"]) == (1, 3)
    assert {spec["restartPolicy"] for spec in replicas.values()} == {"ExitCode"}
    for spec in replicas.values():
        assert spec["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
        assert spec["template"]["metadata"]["labels"]["tfpipe/job"] == "tfpipe-train-run-1"
    assert replicas["Chief"]["template"]["spec"] == replicas["Worker"]["template"]["spec"]  # The same pod.
    assert k8s_fake_server.schema_errors(job, "KubeflowOrgV1TFJob") == []  # Fits the Training Operator's schema.
    json.dumps(job)


def test_the_schema_check_finds_unknown_fields_wrong_types_and_missing_required_ones():
    job = manifest()
    job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["resource"] = {}
    job["spec"]["runPolicy"]["backoffLimit"] = "5"
    assert k8s_fake_server.schema_errors(job, "KubeflowOrgV1TFJob") == [
        "$.spec.runPolicy.backoffLimit: expected int, got '5'",
        "$.spec.tfReplicaSpecs.Chief.template.spec.containers[0].resource: not a field of V1Container",
    ]
    job = manifest()
    del job["spec"]["runPolicy"]
    (error,) = k8s_fake_server.schema_errors(job, "KubeflowOrgV1TFJob")
    assert "run_policy" in error and "must not be `None`" in error


def test_every_replica_runs_the_train_entry_point_with_an_argument_list():
    pod = manifest()["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow" and container["image"] == "reg.example/tfpipe:1"
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    assert container["command"] == ["python", "-m", "tfpipe.components.train"]
    assert container["args"] == [
        "--task=digits",
        "--model_dir=gs://bucket/runs/1",
        "--train_steps=1000",
        f"--task_config={NASTY_CONFIG}",  # One argument, byte for byte: no shell ever parses it.
        "--steps_per_loop=50",
        "--checkpoint_interval=200",
        "--max_to_keep=3",
        "--distribution_strategy=multi_worker_mirrored",
    ]
    assert container["env"] == [
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    ]
    assert pod["serviceAccountName"] == "trainer"


def test_the_resource_profile_applies_to_each_replica_pod():
    pod = manifest()["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "8", "memory": "32G"},
        "limits": {"cpu": "8", "memory": "32G", "nvidia.com/gpu": "2"},
    }
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-spot": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    ]

    cpu_only = manifest(placement=pods({"cpu": "4"}), secret_env=None, service_account="")
    pod = cpu_only["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod and "serviceAccountName" not in pod
    assert "env" not in pod["containers"][0]
    bare = manifest(placement=pods(None))["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "resources" not in bare["containers"][0]


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (dict(replicas=1), ["`replicas` must be an integer >= 2, got 1"]),
        (dict(replicas=True), ["`replicas`", "True"]),
        (dict(train_steps=0), ["`train_steps` must be a positive integer (at most 9007199254740992), got 0"]),
        (dict(model_dir="s3://bucket/run"), ["`model_dir` ('s3://bucket/run') has an unsupported scheme"]),
        (dict(backoff_limit=-1), ["`backoff_limit`", "-1"]),
        (dict(active_deadline_seconds=0), ["`active_deadline_seconds`", "got 0"]),
        (dict(name="Train_1"), ["`job_name`", "'Train_1'", "lower-case"]),
        (dict(name="x" * 51), ["at most 50 characters"]),
        (dict(image=""), ["`image` must be a non-empty string, got ''"]),
        (dict(secret_env={"wandb": {}}), ["`secret_env['wandb']`", "got {}"]),
        (dict(placement="{oops"), ["`placement` is not valid JSON", "'{oops'"]),
        (dict(placement={"affinity": {}}), ["`placement`", "keys among ['resources', 'nodeSelector', 'tolerations']"]),
    ],
)
def test_manifest_rejects_bad_inputs(overrides: Dict[str, Any], fragments: List[str]):
    with pytest.raises(checks.InputError) as caught:
        manifest_object(**overrides)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "profile, fragments",
    [
        ("tpu=v5e:2x2", ["tpu=v5e:2x2 cannot run as TFJob replicas", "accepted: cpu, memory, gpu, spot"]),
        ("gpu=l4:3", ["gpu count 3 for l4", "accepted counts"]),
    ],
)
def test_replica_placement_rejects_what_tfjob_replicas_cannot_be_given(profile: str, fragments: List[str]):
    with pytest.raises(ResourceProfileError) as caught:
        pods(profile)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_job_names_are_stable_dns_labels():
    run_id = "0F3C2A9E-1111-2222-3333-444455556666"
    name = tfjob_train.default_job_name(run_id)
    assert name == "tfpipe-train-0f3c2a9e-1111-2222-3333-444455556666" == tfjob_train.default_job_name(run_id)
    long_a, long_b = (tfjob_train.default_job_name("r" * 80 + suffix) for suffix in ("a", "b"))
    assert len(long_a) == len(long_b) == 50 and long_a != long_b
    assert tfjob_train.default_job_name("run/7 (retry)") == "tfpipe-train-run-7-retry"
    with pytest.raises(ValueError, match=r"`prefix` must start with a lower-case letter, got '9x'"):
        tfjob_train.default_job_name("r", prefix="9x")


class FakeClock:
    """Monotonic time that only `sleep` moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


@pytest.fixture
def api():
    with FakeKubernetesApi() as server:
        yield server
    assert server.schema_errors == []  # Every request the launcher sent fits the Training Operator's schema.


def run(api: FakeKubernetesApi, clock: FakeClock, timeout: float = 600.0) -> Any:
    lines: List[str] = []
    try:
        return tfjob_train.run_tfjob(api.training_client("team-a"), manifest_object(), timeout_seconds=timeout,
                                     poll_interval=10, clock=clock, sleep=clock.sleep, log=lines.append)
    finally:
        api.log = lines


def test_the_launcher_creates_the_job_and_waits_until_it_succeeds(api):
    api.script = [None, "Running", "Running", "Succeeded"]
    clock = FakeClock()
    job = run(api, clock)
    assert tfjob_train.job_state(job) == "Succeeded"
    assert api.calls == ["get", "create", "get", "get", "get", "get"] and clock.sleeps == 3
    assert api.jobs[("team-a", "tfpipe-train-run-1")]["spec"] == manifest()["spec"]
    (create,) = [r for r in api.requests if r.method == "POST"]
    assert create.path == "/apis/kubeflow.org/v1/namespaces/team-a/tfjobs" and create.body == manifest()
    assert api.log[0] == "tfjob | team-a/tfpipe-train-run-1 | created"
    assert api.log[-1] == "tfjob | team-a/tfpipe-train-run-1 | Succeeded: TFJobSucceeded it Succeeded"


def test_a_failed_job_fails_the_launcher_with_its_condition(api):
    api.script = [None, "Failed"]
    with pytest.raises(tfjob_train.TfJobError, match=r"failed \(Failed: TFJobFailed it Failed\); see `kubectl logs "
                                                     r"-n team-a tfpipe-train-run-1-chief-0`"):
        run(api, FakeClock())
    assert "delete" not in api.calls  # Left for its logs; a retried launcher replaces it.


def test_a_job_that_runs_past_the_timeout_is_deleted(api):
    api.script = ["Running"] * 100
    clock = FakeClock()
    with pytest.raises(TimeoutError, match=r"did not finish within `timeout_seconds`; last state: Running"):
        run(api, clock, timeout=55)
    assert api.calls[-2:] == ["delete", "get"] and api.jobs == {}
    (delete,) = [r for r in api.requests if r.method == "DELETE"]
    assert delete.path.endswith("/tfjobs/tfpipe-train-run-1") and delete.body["propagationPolicy"] == "Foreground"
    assert clock.now <= 70  # Bounded: the wait stops at the first look past the deadline.


@pytest.mark.parametrize(
    "state, calls",
    [
        ("Running", ["get", "get", "get"]),  # Still running: adopted, not started twice.
        ("Failed", ["get", "delete", "get", "create", "get", "get"]),  # Replaced: replicas resume from model_dir.
        ("Succeeded", ["get"]),  # Already done.
    ],
)
def test_a_retried_launcher_adopts_replaces_or_accepts_the_job_of_its_earlier_attempt(api, state, calls):
    api.add_job(FakeKubernetesApi.with_state(manifest(), state))
    api.script = [state, "Running", "Succeeded"]
    job = run(api, FakeClock())
    assert tfjob_train.job_state(job) == "Succeeded" and api.calls == calls


def test_errors_other_than_not_found_reach_the_launcher(api):
    api.fail_next("GET", 403, "Forbidden", 'tfjobs.kubeflow.org "tfpipe-train-run-1" is forbidden')
    with pytest.raises(RuntimeError, match=r"Failed to get TFJob: team-a/tfpipe-train-run-1.*403"):
        run(api, FakeClock())
    assert api.calls == ["get"]  # Not taken for an absent job: nothing was created.


def test_read_result_needs_the_chiefs_completion_marker(tmp_path):
    from tfpipe.controller_core import run_dir

    with pytest.raises(tfjob_train.TfJobError, match=r"holds no completion marker at step 100"):
        tfjob_train.read_result(str(tmp_path), 100)
    run_dir.write_json_atomic(str(tmp_path / run_dir.TRAINING_COMPLETE), {
        "step": 100, "checkpoint": f"{tmp_path}/ckpt-100", "train_output": {"loss": 0.25, "accuracy": 0.9}})
    expected = TrainResult(model_dir=str(tmp_path), final_step=100, checkpoint=f"{tmp_path}/ckpt-100",
                           metrics={"loss": 0.25, "accuracy": 0.9})
    assert tfjob_train.read_result(str(tmp_path), 100) == expected


LAUNCHER = """
import json, sys
from kfp.dsl import Metrics, Model
from tfpipe.components.train import tfjob as tfjob_train

kwargs = json.loads(sys.argv[1])
model, metrics = Model(uri=kwargs.pop("model")), Metrics(uri=kwargs.pop("metrics"))
outputs = tfjob_train.train_with_tfjob(model=model, metrics=metrics, **kwargs)
print("RESULT " + json.dumps({"outputs": list(outputs), "model": model.metadata, "metrics": metrics.metadata}))
"""


def test_the_launcher_step_end_to_end_against_the_loopback_api(api, tmp_path):
    """The KFP component's function in a process of its own, as in the launcher pod: kubeconfig, TFJob, wait,
    outputs from the chief's completion marker."""
    from tfpipe.controller_core import run_dir

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    run_dir.write_json_atomic(str(model_dir / run_dir.TRAINING_COMPLETE), {  # What the chief writes at the end.
        "step": 300, "checkpoint": f"{model_dir}/ckpt-300", "train_output": {"loss": 0.5, "accuracy": float("nan")}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "team-a"}}],
        "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
    }))
    api.script = [None, "Running", "Succeeded"]
    kwargs = dict(
        task="digits", model_dir=str(model_dir), train_steps=300, image="reg.example/tfpipe:1",
        model=str(tmp_path / "model"), metrics=str(tmp_path / "metrics"), replicas=3, placement=pods(PROFILE),
        run_id="RUN-7", secret_env='{"wandb": {"api-key": "WANDB_API_KEY"}}', poll_interval=0.01,
    )
    done = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(kwargs)], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["outputs"] == [300, f"{model_dir}/ckpt-300"]
    assert api.calls == ["get", "create", "get", "get", "get"]
    created = api.jobs[("team-a", "tfpipe-train-run-7")]  # The kubeconfig context's namespace.
    assert created["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert created["spec"]["runPolicy"]["activeDeadlineSeconds"] == 604800
    assert created["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-spot": "true"}
    assert result["model"]["final_step"] == 300 and json.loads((tmp_path / "model" / "run.json").read_text()) == {
        "model_dir": str(model_dir), "final_step": 300, "checkpoint": f"{model_dir}/ckpt-300"}
    assert result["metrics"] == {"loss": 0.5, "step": 300.0}  # Non-finite metrics are left out.


def test_the_launcher_step_refuses_a_bad_input_in_one_line_before_contacting_the_cluster(tmp_path):
    kwargs = dict(task="digits", model_dir=str(tmp_path / "run"), train_steps=300, image="reg.example/tfpipe:1",
                  model=str(tmp_path / "model"), metrics=str(tmp_path / "metrics"), replicas=1)
    done = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(kwargs)], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("train_with_tfjob: ")]
    assert "`replicas` must be an integer >= 2, got 1." in line


def compile_docs(tmp_path, **kwargs) -> List[Dict[str, Any]]:
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(**kwargs), str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    return docs


def test_gke_train_replicas_compile_to_a_tfjob_launcher_whose_inputs_build_the_manifest(tmp_path):
    spec, platform = compile_docs(
        tmp_path, backend="gke", image="reg.example/tfpipe:2", train_replicas=3,
        profiles={"train": PROFILE, "eval": "cpu=2,memory=8G"},
        secret_env={"wandb": {"api-key": "WANDB_API_KEY"}},
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" not in tasks
    launcher = tasks["train-with-tfjob"]
    assert launcher["taskInfo"]["name"] == "train" and launcher["retryPolicy"]["maxRetryCount"] == 3
    inputs = launcher["inputs"]["parameters"]
    constants = {k: v["runtimeValue"]["constant"] for k, v in inputs.items() if "runtimeValue" in v}
    assert constants == {
        "image": "reg.example/tfpipe:2", "replicas": 3, "placement": pods(PROFILE),
        "run_id": "{{$.pipeline_job_uuid}}", "secret_env": '{"wandb": {"api-key": "WANDB_API_KEY"}}',
    }
    container = spec["deploymentSpec"]["executors"]["exec-train-with-tfjob"]["container"]
    assert container["image"] == "reg.example/tfpipe:2" and "resources" not in container  # A light launcher pod...
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" not in k8s["exec-train-with-tfjob"] and "tolerations" not in k8s["exec-train-with-tfjob"]
    assert k8s["exec-train-with-tfjob"]["secretAsEnv"][0]["secretName"] == "wandb"  # ...that reads model_dir.
    assert spec["deploymentSpec"]["executors"]["exec-continuous-eval"]["container"]["resources"]["cpuLimit"] == 2

    # What the launcher builds at run time from these inputs.
    job = ApiClient().sanitize_for_serialization(tfjob_train.tfjob_manifest(
        name=tfjob_train.default_job_name("0f3c2a9e-run"), namespace="team-a", image=constants["image"],
        train_inputs=dict(task="digits", model_dir="gs://bucket/runs/1", train_steps=1000),
        replicas=int(constants["replicas"]),
        placement=constants["placement"], secret_env=json.loads(constants["secret_env"]),
    ))
    replicas = job["spec"]["tfReplicaSpecs"]
    assert (replicas["Chief"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    pod = replicas["Worker"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    assert "--distribution_strategy=multi_worker_mirrored" in pod["containers"][0]["args"]


def test_one_replica_keeps_the_plain_train_step(tmp_path):
    spec, _ = compile_docs(tmp_path, backend="gke", image="gcr.io/p/tfpipe:1", profiles={"train": "gpu=l4:1"})
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" in tasks and "train-with-tfjob" not in tasks
    assert tasks["train"]["inputs"]["parameters"]["distribution_strategy"] == {
        "componentInputParameter": "distribution_strategy"}
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backend="local", train_replicas=2), r"`train_replicas` is 2, but backend 'local' runs one process"),
        (dict(backend="gke", train_replicas=0), r"`train_replicas` must be a positive integer \(at most 1000\), got 0"),
        (dict(backend="gke", train_replicas="2"), r"`train_replicas` must be a positive integer \(at most 1000\), got '2'"),
        (dict(backend="gke", train_replicas=2, profiles={"train": "tpu=v5e:2x2"}),
         r"tpu=v5e:2x2 cannot run as TFJob replicas"),
    ],
)
def test_train_replicas_errors_before_compiling(kwargs, message):
    with pytest.raises(checks.InputError, match=message):
        build_pipeline(**kwargs)
