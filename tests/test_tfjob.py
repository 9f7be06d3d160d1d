"""Multi-worker training on GKE as a Kubeflow TFJob: the manifest, the launcher's wait, the compiled pipeline.

No cluster: the manifest is checked as data, the launcher's create/adopt/replace/wait against an in-memory
stand-in of `CustomObjectsApi` with a fake clock, and the pipeline as compiled IR.
"""

import copy
import json
from typing import Any, Dict, List, Optional

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2
from kubernetes.client.exceptions import ApiException

from tfpipe.pipelines import multi_worker
from tfpipe.pipelines.resources import ResourceProfileError
from tfpipe.pipelines.train_eval_export import build_pipeline

NASTY_CONFIG = '{"batch_size": 64, "note": "a b; $(rm -rf /) \'q\' \\"dq\\""}'


def manifest(**overrides: Any) -> Dict[str, Any]:
    kwargs = dict(
        name="tfpipe-train-run-1", namespace="team-a", image="reg.example/tfpipe:1", task="digits",
        model_dir="gs://bucket/runs/1", train_steps=1000, task_config=NASTY_CONFIG, steps_per_loop=50,
        checkpoint_interval=200, max_to_keep=3, replicas=4, profile="cpu=8,memory=32G,gpu=l4:2,spot",
        backoff_limit=5, active_deadline_seconds=7200, service_account="trainer",
        secret_env={"wandb": {"api-key": "WANDB_API_KEY"}},
    )
    kwargs.update(overrides)
    return multi_worker.tfjob_manifest(**kwargs)


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
    # Chief and workers run the same pod; each replica spec holds its own copy.
    assert replicas["Chief"]["template"]["spec"] == replicas["Worker"]["template"]["spec"]
    assert replicas["Chief"]["template"]["spec"] is not replicas["Worker"]["template"]["spec"]
    json.dumps(job)  # Plain data, ready for the Kubernetes API.


def test_every_replica_runs_the_train_entry_point_with_an_argument_list():
    pod = manifest()["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow" and container["image"] == "reg.example/tfpipe:1"
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    assert container["command"] == ["python", "-m", "tfpipe.components.train"]
    assert container["args"] == [
        "--task=digits",
        f"--task_config={NASTY_CONFIG}",  # One argument, byte for byte: no shell ever parses it.
        "--model_dir=gs://bucket/runs/1",
        "--train_steps=1000",
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

    cpu_only = manifest(profile={"cpu": "4"}, secret_env=None, service_account="")
    pod = cpu_only["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod and "serviceAccountName" not in pod
    assert "env" not in pod["containers"][0]
    bare = manifest(profile=None)["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "resources" not in bare["containers"][0]


@pytest.mark.parametrize(
    "overrides, error, fragments",
    [
        (dict(replicas=1), ValueError, ["`replicas` must be an integer >= 2, got 1"]),
        (dict(replicas=True), ValueError, ["`replicas`", "True"]),
        (dict(train_steps=0), ValueError, ["`train_steps` must be an integer >= 1, got 0"]),
        (dict(backoff_limit=-1), ValueError, ["`backoff_limit`", "-1"]),
        (dict(active_deadline_seconds=0), ValueError, ["`active_deadline_seconds`", "got 0"]),
        (dict(name="Train_1"), ValueError, ["`job_name`", "'Train_1'", "lower-case"]),
        (dict(name="x" * 51), ValueError, ["at most 50 characters"]),
        (dict(image=""), ValueError, ["`image` must be a non-empty string, got ''"]),
        (dict(profile="tpu=v5e:2x2"), ResourceProfileError, ["tpu=v5e:2x2 cannot run as TFJob replicas",
                                                             "accepted: cpu, memory, gpu, spot"]),
        (dict(profile="gpu=l4:3"), ResourceProfileError, ["gpu count 3 for l4", "accepted counts"]),
        (dict(secret_env={"wandb": {}}), ValueError, ["`secret_env['wandb']`", "got {}"]),
    ],
)
def test_manifest_rejects_bad_inputs(overrides: Dict[str, Any], error: type, fragments: List[str]):
    with pytest.raises(error) as caught:
        manifest(**overrides)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_job_names_are_stable_dns_labels():
    run_id = "0F3C2A9E-1111-2222-3333-444455556666"
    name = multi_worker.job_name(run_id)
    assert name == "tfpipe-train-0f3c2a9e-1111-2222-3333-444455556666" == multi_worker.job_name(run_id)
    long_a, long_b = (multi_worker.job_name("r" * 80 + suffix) for suffix in ("a", "b"))
    assert len(long_a) == len(long_b) == 50 and long_a != long_b
    assert multi_worker.job_name("run/7 (retry)") == "tfpipe-train-run-7-retry"
    with pytest.raises(ValueError, match=r"`prefix` must start with a lower-case letter, got '9x'"):
        multi_worker.job_name("r", prefix="9x")


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


class FakeCustomObjects:
    """`CustomObjectsApi` for one namespace: the job's status follows a script, one entry per `get`."""

    def __init__(self, existing: Optional[Dict[str, Any]] = None, script: Optional[List[Optional[str]]] = None):
        self.jobs: Dict[str, Dict[str, Any]] = {}
        if existing is not None:
            self.jobs[existing["metadata"]["name"]] = existing
        self.script = list(script or [])
        self.calls: List[str] = []

    @staticmethod
    def with_state(job: Dict[str, Any], state: Optional[str]) -> Dict[str, Any]:
        job = copy.deepcopy(job)
        conditions = [{"type": "Created", "status": "True"}]
        if state:
            conditions.append({"type": state, "status": "True", "reason": f"TFJob{state}", "message": f"it {state}"})
        job["status"] = {"conditions": conditions}
        return job

    def _check(self, group: str, version: str, plural: str) -> None:
        assert (group, version, plural) == ("kubeflow.org", "v1", "tfjobs")

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, plural)
        self.calls.append("get")
        if name not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        if self.script:
            self.jobs[name] = self.with_state(self.jobs[name], self.script.pop(0))
        return copy.deepcopy(self.jobs[name])

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self._check(group, version, plural)
        self.calls.append("create")
        assert namespace == body["metadata"]["namespace"]
        self.jobs[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body=None):
        self._check(group, version, plural)
        self.calls.append("delete")
        assert body == {"propagationPolicy": "Foreground"}
        self.jobs.pop(name, None)


def run(api: FakeCustomObjects, clock: FakeClock, timeout: float = 600.0) -> Dict[str, Any]:
    lines: List[str] = []
    result = multi_worker.run_tfjob(api, manifest(), timeout_seconds=timeout, poll_interval=10, clock=clock,
                                    sleep=clock.sleep, log=lines.append)
    api.log = lines
    return result


def test_the_launcher_creates_the_job_and_waits_until_it_succeeds():
    api, clock = FakeCustomObjects(script=[None, "Running", "Running", "Succeeded"]), FakeClock()
    job = run(api, clock)
    assert multi_worker.job_state(job) == "Succeeded"
    assert api.calls == ["get", "create", "get", "get", "get", "get"] and clock.sleeps == 3
    assert api.jobs["tfpipe-train-run-1"]["spec"] == manifest()["spec"]
    assert api.log[0] == "tfjob | team-a/tfpipe-train-run-1 | created"
    assert api.log[-1] == "tfjob | team-a/tfpipe-train-run-1 | Succeeded: TFJobSucceeded it Succeeded"


def test_a_failed_job_fails_the_launcher_with_its_condition():
    api, clock = FakeCustomObjects(script=[None, "Failed"]), FakeClock()
    with pytest.raises(multi_worker.TfJobError, match=r"failed \(Failed: TFJobFailed it Failed\); see `kubectl logs "
                                                      r"-n team-a tfpipe-train-run-1-chief-0`"):
        run(api, clock)
    assert "delete" not in api.calls  # Left for its logs; a retried launcher replaces it.


def test_a_job_that_runs_past_the_timeout_is_deleted():
    api, clock = FakeCustomObjects(script=["Running"] * 100), FakeClock()
    with pytest.raises(TimeoutError, match=r"did not finish within `timeout_seconds`; last state: Running"):
        run(api, clock, timeout=55)
    assert api.calls[-2:] == ["delete", "get"] and "tfpipe-train-run-1" not in api.jobs
    assert clock.now <= 70  # Bounded: the wait stops at the first look past the deadline.


@pytest.mark.parametrize(
    "state, calls",
    [
        ("Running", ["get", "get", "get"]),  # Still running: adopted, not started twice.
        ("Failed", ["get", "delete", "get", "create", "get", "get"]),  # Replaced: replicas resume from model_dir.
        ("Succeeded", ["get"]),  # Already done.
    ],
)
def test_a_retried_launcher_adopts_replaces_or_accepts_the_job_of_its_earlier_attempt(state, calls):
    earlier = FakeCustomObjects.with_state(manifest(), state)
    api, clock = FakeCustomObjects(existing=earlier, script=[state, "Running", "Succeeded"]), FakeClock()
    job = run(api, clock)
    assert multi_worker.job_state(job) == "Succeeded" and api.calls == calls


def test_read_result_needs_the_chiefs_completion_marker(tmp_path):
    from tfpipe.controller_core import run_dir

    with pytest.raises(multi_worker.TfJobError, match=r"holds no completion marker at step 100"):
        multi_worker.read_result(str(tmp_path), 100)
    run_dir.write_json_atomic(str(tmp_path / run_dir.TRAINING_COMPLETE), {
        "step": 100, "checkpoint": f"{tmp_path}/ckpt-100", "train_output": {"loss": 0.25, "accuracy": 0.9}})
    expected = (100, f"{tmp_path}/ckpt-100", {"loss": 0.25, "accuracy": 0.9})
    assert multi_worker.read_result(str(tmp_path), 100) == expected


def compile_docs(tmp_path, **kwargs) -> List[Dict[str, Any]]:
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(**kwargs), str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    return docs


def test_gke_train_replicas_compile_to_a_tfjob_launcher_whose_inputs_build_the_manifest(tmp_path):
    spec, platform = compile_docs(
        tmp_path, backend="gke", image="reg.example/tfpipe:2", train_replicas=3,
        profiles={"train": "cpu=8,memory=32G,gpu=l4:2,spot", "eval": "cpu=2,memory=8G"},
        secret_env={"wandb": {"api-key": "WANDB_API_KEY"}},
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" not in tasks
    launcher = tasks["train-with-tfjob"]
    assert launcher["taskInfo"]["name"] == "train" and launcher["retryPolicy"]["maxRetryCount"] == 3
    inputs = launcher["inputs"]["parameters"]
    constants = {k: v["runtimeValue"]["constant"] for k, v in inputs.items() if "runtimeValue" in v}
    assert constants == {
        "image": "reg.example/tfpipe:2", "replicas": 3, "resource_profile": "cpu=8,memory=32G,gpu=l4:2,spot",
        "run_id": "{{$.pipeline_job_uuid}}", "secret_env": '{"wandb": {"api-key": "WANDB_API_KEY"}}',
    }
    container = spec["deploymentSpec"]["executors"]["exec-train-with-tfjob"]["container"]
    assert container["image"] == "reg.example/tfpipe:2" and "resources" not in container  # A light launcher pod...
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" not in k8s["exec-train-with-tfjob"] and "tolerations" not in k8s["exec-train-with-tfjob"]
    assert k8s["exec-train-with-tfjob"]["secretAsEnv"][0]["secretName"] == "wandb"  # ...that reads model_dir.
    assert spec["deploymentSpec"]["executors"]["exec-continuous-eval"]["container"]["resources"]["cpuLimit"] == 2

    # What the launcher builds at run time from these inputs.
    job = multi_worker.tfjob_manifest(
        name=multi_worker.job_name("0f3c2a9e-run"), namespace="team-a", image=constants["image"], task="digits",
        model_dir="gs://bucket/runs/1", train_steps=1000, replicas=int(constants["replicas"]),
        profile=constants["resource_profile"], secret_env=json.loads(constants["secret_env"]),
    )
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
        (dict(backend="gke", train_replicas=0), r"`train_replicas` must be a positive integer, got 0"),
        (dict(backend="gke", train_replicas="2"), r"`train_replicas` must be a positive integer, got '2'"),
        (dict(backend="gke", train_replicas=2, profiles={"train": "tpu=v5e:2x2"}),
         r"tpu=v5e:2x2 cannot run as TFJob replicas"),
    ],
)
def test_train_replicas_errors_before_compiling(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_pipeline(**kwargs)
