"""Resource profiles: parsing, validation, and what GKE / Vertex pipelines compile from them."""

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, dsl
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from tfpipe.pipelines import accelerators, placement, profiles
from tfpipe.pipelines.backends import apply_profile, validate_for_backend
from tfpipe.pipelines.profiles import GpuRequest, ResourceProfile, ResourceProfileError, TpuRequest, parse_profile
from tfpipe.pipelines.vertex import vertex_custom_job_component, vertex_custom_job_spec

# ----------------------------------------------------------------------------------------------------------------
# Parsing.
# ----------------------------------------------------------------------------------------------------------------


def test_parses_the_full_text_form():
    profile = parse_profile("cpu=8,memory=32G,gpu=l4:1,spot", step="train")
    assert profile == ResourceProfile(step="train", cpu="8", memory="32G", gpu=GpuRequest("l4", 1), spot=True)
    assert profile.to_spec() == "cpu=8,memory=32G,gpu=l4:1,spot"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("", ResourceProfile(step="s")),
        ("  ", ResourceProfile(step="s")),
        ("cpu=500m", ResourceProfile(step="s", cpu="500m")),
        ("cpu=0.5, memory=16Gi", ResourceProfile(step="s", cpu="0.5", memory="16Gi")),
        ("CPU = 4 , Memory=1024", ResourceProfile(step="s", cpu="4", memory="1024")),
        ("gpu=a100-80gb:8", ResourceProfile(step="s", gpu=GpuRequest("a100-80gb", 8))),
        ("gpu=a100:16", ResourceProfile(step="s", gpu=GpuRequest("a100", 16))),
        ("gpu=t4:2", ResourceProfile(step="s", gpu=GpuRequest("t4", 2))),
        # The GKE label and the Vertex enum name are accepted spellings of a type.
        ("gpu=nvidia-h100-80gb:8", ResourceProfile(step="s", gpu=GpuRequest("h100-80gb", 8))),
        ("gpu=NVIDIA_TESLA_T4:4", ResourceProfile(step="s", gpu=GpuRequest("t4", 4))),
        ("gpu=h200:8", ResourceProfile(step="s", gpu=GpuRequest("h200-141gb", 8))),
        ("tpu=v5e:2x2", ResourceProfile(step="s", tpu=TpuRequest("v5e", "2x2"))),
        ("tpu=v4:2x2x1", ResourceProfile(step="s", tpu=TpuRequest("v4", "2x2x1"))),
        ("tpu=v4:2x2x1:4", ResourceProfile(step="s", tpu=TpuRequest("v4", "2x2x1"))),
        ("tpu=v6e:2x4", ResourceProfile(step="s", tpu=TpuRequest("v6e", "2x4"))),
        ("tpu=v5litepod:1x1", ResourceProfile(step="s", tpu=TpuRequest("v5e", "1x1"))),
        ("tpu=v5p:2x2x1", ResourceProfile(step="s", tpu=TpuRequest("v5p", "2x2x1"))),
        ("tpu=v4:4x4x4", ResourceProfile(step="s", tpu=TpuRequest("v4", "4x4x4"))),  # valid, multi-host
        ("spot", ResourceProfile(step="s", spot=True)),
        ("spot=true", ResourceProfile(step="s", spot=True)),
        ("spot=false", ResourceProfile(step="s", spot=False)),
        ("cpu=2,", ResourceProfile(step="s", cpu="2")),
    ],
)
def test_parses_text_forms(spec: str, expected: ResourceProfile):
    assert parse_profile(spec, step="s") == expected


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({}, ResourceProfile(step="s")),
        ({"cpu": 8, "memory": "32G"}, ResourceProfile(step="s", cpu="8", memory="32G")),
        ({"cpu": 0.5}, ResourceProfile(step="s", cpu="0.5")),
        ({"memory": 2**30}, ResourceProfile(step="s", memory=str(2**30))),
        ({"gpu": "l4:2", "spot": True}, ResourceProfile(step="s", gpu=GpuRequest("l4", 2), spot=True)),
        ({"gpu": {"type": "v100", "count": 8}}, ResourceProfile(step="s", gpu=GpuRequest("v100", 8))),
        ({"gpu": {"type": "l4", "count": "4"}}, ResourceProfile(step="s", gpu=GpuRequest("l4", 4))),
        (
            {"tpu": {"type": "v5e", "topology": "2x4", "chips": 8}},
            ResourceProfile(step="s", tpu=TpuRequest("v5e", "2x4")),
        ),
        ({"tpu": "v6e:1x1", "spot": "yes"}, ResourceProfile(step="s", tpu=TpuRequest("v6e", "1x1"), spot=True)),
        (None, ResourceProfile(step="s")),
    ],
)
def test_parses_mapping_forms(spec: Any, expected: ResourceProfile):
    assert parse_profile(spec, step="s") == expected


def test_a_profile_round_trips_through_its_text_and_can_be_reused_for_another_step():
    profile = parse_profile({"cpu": "4", "memory": "16Gi", "tpu": "v5e:2x2", "spot": True}, step="train")
    assert profile.to_spec() == "cpu=4,memory=16Gi,tpu=v5e:2x2,spot"
    assert parse_profile(profile.to_spec(), step="train") == profile
    assert parse_profile(profile, step="export") == ResourceProfile(
        step="export", cpu="4", memory="16Gi", tpu=TpuRequest("v5e", "2x2"), spot=True
    )


def test_direct_construction_normalises_aliases_and_validates():
    assert ResourceProfile(step="s", gpu=GpuRequest("NVIDIA_L4", 1)).gpu == GpuRequest("l4", 1)
    with pytest.raises(ResourceProfileError, match=r"gpu count 3 for l4 is not offered"):
        ResourceProfile(step="s", gpu=GpuRequest("l4", 3))


def test_quantities():
    assert profiles.cpu_cores("8") == 8.0
    assert profiles.cpu_cores("500m") == 0.5
    assert profiles.cpu_cores(".25") == 0.25
    assert profiles.memory_bytes("32G") == 32 * 10**9
    assert profiles.memory_bytes("16Gi") == 16 * 2**30
    assert profiles.memory_bytes("1024") == 1024
    assert profiles.memory_bytes("1Ei") == 2**60 and profiles.memory_bytes("3E") == 3 * 10**18
    assert profiles.cpu_cores("1.5m") == 0.0015
    assert TpuRequest("v4", "2x2x2").chips == 8


# ----------------------------------------------------------------------------------------------------------------
# Validation errors (before anything is compiled).
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, fragments",
    [
        # Unknown GPU type.
        ("gpu=k80:1", ["'train'", "gpu type 'k80' is unknown", "accepted: t4, p4, p100, v100, l4, a100"]),
        # GPU counts no machine offers.
        ("gpu=l4:3", ["gpu count 3 for l4 is not offered by any machine", "accepted counts for l4: 1, 2, 4, 8"]),
        ("gpu=t4:8", ["gpu count 8 for t4", "accepted counts for t4: 1, 2, 4"]),
        ("gpu=a100-80gb:16", ["gpu count 16 for a100-80gb", "1, 2, 4, 8"]),
        ("gpu=h200-141gb:4", ["gpu count 4 for h200-141gb", "accepted counts for h200-141gb: 8"]),
        ("gpu=l4:0", ["gpu count for l4 0 is not a positive integer"]),
        ("gpu=l4:two", ["gpu count for l4 'two' is not a positive integer"]),
        ("gpu=l4", ["gpu 'l4' is malformed", "accepted: <type>:<count>"]),
        # Unknown TPU type.
        ("tpu=v7:2x2", ["tpu type 'v7' is unknown", "accepted: v2, v3, v4, v5e, v5p, v6e"]),
        # Topology of the wrong shape, not valid for the type, or not matching the chip count.
        ("tpu=v5e:2x2x1", ["tpu topology '2x2x1' for v5e is not a 2-D topology", "single-host for v5e: 1x1, 2x2, 2x4"]),
        ("tpu=v4:2x2", ["tpu topology '2x2' for v4 is not a 3-D topology", "single-host for v4: 2x2x1"]),
        ("tpu=v5e:3x3", ["'3x3' is not a valid topology for v5e", "single-host: 1x1, 2x2, 2x4", "multi-host: 4x4"]),
        ("tpu=v6e:2by2", ["tpu topology '2by2' for v6e is not a 2-D topology"]),
        ("tpu=v4:2x2x1:8", ["tpu chips '8' do not match topology 2x2x1 of v4, which has 4 chips", "accepted: 4"]),
        ("tpu=v5e", ["tpu 'v5e' is malformed", "'<type>:<topology>[:<chips>]'"]),
        # Both accelerators.
        ("gpu=l4:1,tpu=v5e:2x2", ["gpu=l4:1 and tpu=v5e:2x2 are both set", "at most one of gpu and tpu"]),
        # Malformed cpu / memory.
        ("cpu=8cores", ["cpu '8cores' is malformed", "accepted: a number of cores ('8', '0.5') or millicores"]),
        ("cpu=-1", ["cpu '-1' is malformed"]),
        ("cpu=0", ["cpu '0' is out of range; accepted: more than 0 and at most 1024 cores"]),
        ("cpu=99999999999999999999", ["cpu '99999999999999999999' is out of range", "at most 1024 cores"]),
        ("cpu=1025", ["cpu '1025' is out of range"]),
        # Forms Kubernetes reads but KFP's task setters refuse: refused here, so every route takes a profile.
        ("cpu=1e3", ["cpu '1e3' is malformed"]),
        ("cpu=+5", ["cpu '+5' is malformed"]),
        ("cpu=2k", ["cpu '2k' is malformed"]),
        ("memory=5m", ["memory '5m' is malformed"]),
        ("memory=16iG", ["memory '16iG' is malformed"]),
        ("cpu=", ["cpu '' is malformed"]),
        ("memory=32GB", ["memory '32GB' is malformed", "'32G', '16Gi'"]),
        ("memory=1.5Gi", ["memory '1.5Gi' is malformed"]),
        ("memory=0", ["memory '0' is not positive"]),
        # Unknown / repeated / valueless keys, bad booleans.
        ("cpu=8,disk=100G", ["unknown key 'disk'", "accepted: cpu, memory, gpu, tpu, spot"]),
        ("preemptible", ["unknown key 'preemptible'"]),
        ("cpu=8,cpu=4", ["key 'cpu' is given twice"]),
        ("memory", ["'memory' has no value", "accepted: memory=<value>"]),
        ("spot=maybe", ["spot 'maybe' is not a boolean", "accepted: true/false"]),
    ],
)
def test_rejects_bad_text_profiles(spec: str, fragments: list[str]):
    with pytest.raises(ResourceProfileError) as caught:
        parse_profile(spec, step="train")
    message = str(caught.value)
    assert message.startswith("resource profile for step 'train': ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ({"cpu": 8, "gpus": "l4:1"}, ["unknown profile key(s) 'gpus'", "accepted: cpu, memory, gpu, tpu, spot"]),
        (
            {"gpu": {"type": "l4", "count": 1, "memory": "24G"}},
            ["unknown gpu key(s) 'memory'", "accepted: type, count"],
        ),
        ({"gpu": {"count": 1}}, ["gpu type None is unknown"]),
        ({"gpu": {"type": "l4"}}, ["gpu count for l4 None is not a positive integer"]),
        ({"gpu": 4}, ["gpu 4 is malformed"]),
        ({"tpu": {"type": "v5e", "topology": "2x2", "chips": 8}}, ["tpu chips 8 do not match topology 2x2"]),
        ({"tpu": ["v5e", "2x2"]}, ["tpu ['v5e', '2x2'] is malformed"]),
        ({"cpu": True}, ["cpu True is malformed"]),
        ({"memory": 1.5}, ["memory 1.5 is malformed"]),
        ({"spot": 1}, ["spot 1 is not a boolean"]),
    ],
)
def test_rejects_bad_mapping_profiles(spec: dict, fragments: list[str]):
    with pytest.raises(ResourceProfileError) as caught:
        parse_profile(spec, step="eval")
    assert str(caught.value).startswith("resource profile for step 'eval': ")
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_rejects_a_spec_of_another_kind_and_an_empty_step():
    with pytest.raises(ResourceProfileError, match=r"42 is neither text nor a mapping"):
        parse_profile(42, step="train")  # type: ignore[arg-type]
    with pytest.raises(ResourceProfileError, match=r"step '' is invalid; accepted: a non-empty step name"):
        parse_profile("cpu=1", step="")


@pytest.mark.parametrize(
    "spec, backend, fragments",
    [
        ("cpu=1", "kubeflow", ["backend 'kubeflow' is unknown", "accepted: gke, vertex"]),
        # Multi-host TPU topologies cannot be one pod.
        (
            "tpu=v5e:4x4",
            "gke",
            ["topology 4x4 of v5e spans several hosts", "single-host topologies: 1x1, 2x2, 2x4", "TFJob/JobSet"],
        ),
        ("tpu=v4:2x2x2", "gke", ["topology 2x2x2 of v4 spans several hosts", "accepted single-host topologies: 2x2x1"]),
        # TPUs a backend cannot give in a plain task.
        ("tpu=v3:2x2", "gke", ["tpu v3 is not offered in GKE node pools", "accepted on gke: v4, v5e, v5p, v6e"]),
        (
            "tpu=v5e:2x2",
            "vertex",
            [
                "tpu=v5e:2x2 cannot be asked of Vertex pipeline task setters",
                "custom-job route",
                "pip install tfpipe[vertex-custom-job]",
            ],
        ),
        ("spot", "vertex", ["spot cannot be asked of Vertex pipeline task setters", "custom-job route"]),
        # Vertex task caps.
        ("cpu=128", "vertex", ["cpu '128' exceeds the Vertex pipeline task limit", "at most 96 cores"]),
        ("memory=700G", "vertex", ["memory '700G' exceeds", "at most 624G"]),
        ("memory=600Gi", "vertex", ["memory '600Gi' exceeds"]),  # 644 GB
    ],
)
def test_rejects_what_a_backend_cannot_give(spec: str, backend: str, fragments: list[str]):
    profile = parse_profile(spec, step="train")
    with pytest.raises(ResourceProfileError) as caught:
        validate_for_backend(profile, backend=backend)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "spec, backend",
    [
        ("cpu=96,memory=624G,gpu=a100:16", "vertex"),
        ("memory=581Gi", "vertex"),  # 623.8 GB
        ("tpu=v5p:2x2x1,spot", "gke"),
        ("tpu=v6e:2x4", "gke"),
        ("cpu=200,memory=1T,gpu=h200:8,spot", "gke"),
    ],
)
def test_accepts_what_a_backend_can_give(spec: str, backend: str):
    validate_for_backend(parse_profile(spec, step="train"), backend=backend)


def test_gpu_and_tpu_tables_name_real_vertex_accelerators():
    # The Vertex enum names must be members of the Vertex API's AcceleratorType.
    from google.cloud.aiplatform_v1.types import AcceleratorType  # the [vertex] extra
    names = {gpu.vertex_accelerator for gpu in accelerators.GPU_TYPES.values()}
    names |= {tpu.vertex_accelerator for tpu in accelerators.TPU_TYPES.values() if tpu.vertex_accelerator}
    assert names - set(AcceleratorType.__members__) == set()
    for gpu in accelerators.GPU_TYPES.values():
        assert gpu.gke_label.startswith("nvidia-")
        assert gpu.counts == tuple(sorted(gpu.counts)) and set(gpu.counts) <= {1, 2, 4, 8, 16}
    for tpu in accelerators.TPU_TYPES.values():
        for topology, host in tpu.single_host.items():
            assert TpuRequest(tpu.name, topology).chips == host.chips


# ----------------------------------------------------------------------------------------------------------------
# Compiled IR.
# ----------------------------------------------------------------------------------------------------------------


@dsl.component(base_image="python:3.11")
def train_step(steps: int) -> int:
    return steps


@dsl.component(base_image="python:3.11")
def eval_step(step: int) -> float:
    return float(step)


@dsl.component(base_image="python:3.11")
def export_step(step: int) -> str:
    return str(step)


def _compile(tmp_path: Path, backend: str, profiles: dict[str, str]) -> list[dict]:
    parsed = {step: parse_profile(spec, step=step) for step, spec in profiles.items()}

    @dsl.pipeline(name=f"resources-{backend}")
    def pipeline(steps: int = 10):
        train = apply_profile(train_step(steps=steps), parsed["train"], backend=backend)
        evaluate = apply_profile(eval_step(step=train.output), parsed["eval"], backend=backend)
        apply_profile(export_step(step=train.output), parsed["export"], backend=backend).after(evaluate)

    path = tmp_path / f"{backend}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    # The first document is a valid PipelineSpec, and its deployment spec a valid PipelineDeploymentConfig.
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(docs[0]["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    return docs


def _executor(docs: list[dict], task: str) -> str:
    component = docs[0]["root"]["dag"]["tasks"][task]["componentRef"]["name"]
    return docs[0]["components"][component]["executorLabel"]


def _resources(
    docs: list[dict], task: str
) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec:
    config = json_format.ParseDict(docs[0]["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    return config.executors[_executor(docs, task)].container.resources


def _kubernetes(docs: list[dict], task: str) -> kubernetes_executor_config_pb2.KubernetesExecutorConfig:
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return json_format.ParseDict(
        executors[_executor(docs, task)], kubernetes_executor_config_pb2.KubernetesExecutorConfig()
    )


def _tolerations(config: kubernetes_executor_config_pb2.KubernetesExecutorConfig) -> list[tuple[str, str, str, str]]:
    return [(t.key, t.operator, t.value, t.effect) for t in config.tolerations]


def test_gke_profiles_compile_to_kubernetes_resources_selectors_and_tolerations(tmp_path: Path):
    docs = _compile(
        tmp_path,
        "gke",
        {
            "train": "cpu=8,memory=32G,gpu=a100-80gb:8,spot",
            "eval": "cpu=4,memory=16Gi,tpu=v5e:2x2",
            "export": "cpu=500m",
        },
    )
    assert len(docs) == 2
    json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())

    train = _resources(docs, "train-step")
    assert (train.accelerator.resource_type, train.accelerator.resource_count) == ("nvidia.com/gpu", "8")
    assert (train.resource_cpu_request, train.resource_cpu_limit) == ("8", "8")
    assert (train.resource_memory_request, train.resource_memory_limit) == ("32G", "32G")
    train_k8s = _kubernetes(docs, "train-step")
    assert dict(train_k8s.node_selector.labels) == {
        "cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
        "cloud.google.com/gke-spot": "true",
    }
    assert _tolerations(train_k8s) == [
        ("nvidia.com/gpu", "Exists", "", "NoSchedule"),
        ("cloud.google.com/gke-spot", "Equal", "true", "NoSchedule"),
    ]

    evaluate = _resources(docs, "eval-step")
    assert (evaluate.accelerator.resource_type, evaluate.accelerator.resource_count) == ("google.com/tpu", "4")
    assert (evaluate.resource_cpu_limit, evaluate.resource_memory_limit) == ("4", "16Gi")
    eval_k8s = _kubernetes(docs, "eval-step")
    assert dict(eval_k8s.node_selector.labels) == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "2x2",
    }
    assert _tolerations(eval_k8s) == [("google.com/tpu", "Exists", "", "NoSchedule")]

    export = _resources(docs, "export-step")
    assert export.resource_cpu_limit == "500m" and not export.HasField("accelerator")
    assert _executor(docs, "export-step") not in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_gke_tasks_and_tfjob_pods_get_the_same_placement(tmp_path: Path):
    profile = "cpu=8,memory=32G,gpu=a100-80gb:8,spot"
    docs = _compile(tmp_path, "gke", {"train": profile, "eval": "", "export": ""})
    task = _kubernetes(docs, "train-step")
    pod = placement.tfjob_placement(parse_profile(profile, step="train")).pod_json()
    assert dict(task.node_selector.labels) == pod["nodeSelector"]
    assert _tolerations(task) == [(t["key"], t["operator"], t.get("value", ""), t["effect"]) for t in pod["tolerations"]]
    resources = _resources(docs, "train-step")
    assert pod["resources"] == {
        "requests": {"cpu": resources.resource_cpu_request, "memory": resources.resource_memory_request},
        "limits": {"cpu": resources.resource_cpu_limit, "memory": resources.resource_memory_limit,
                   resources.accelerator.resource_type: resources.accelerator.resource_count},
    }


@pytest.mark.parametrize(
    "spec, label, topology, chips",
    [
        ("tpu=v4:2x2x1", "tpu-v4-podslice", "2x2x1", "4"),
        ("tpu=v5p:2x2x1", "tpu-v5p-slice", "2x2x1", "4"),
        ("tpu=v6e:2x4", "tpu-v6e-slice", "2x4", "8"),
        ("tpu=v5e:1x1", "tpu-v5-lite-podslice", "1x1", "1"),
    ],
)
def test_gke_tpu_chips_per_host_and_selectors(tmp_path: Path, spec: str, label: str, topology: str, chips: str):
    docs = _compile(tmp_path, "gke", {"train": spec, "eval": "", "export": ""})
    train = _resources(docs, "train-step")
    assert (train.accelerator.resource_type, train.accelerator.resource_count) == ("google.com/tpu", chips)
    assert dict(_kubernetes(docs, "train-step").node_selector.labels) == {
        "cloud.google.com/gke-tpu-accelerator": label,
        "cloud.google.com/gke-tpu-topology": topology,
    }


def test_vertex_profiles_compile_to_accelerator_enums_and_limits_without_kubernetes_config(tmp_path: Path):
    docs = _compile(
        tmp_path,
        "vertex",
        {"train": "cpu=16,memory=64G,gpu=l4:2", "eval": "cpu=4,memory=16Gi,gpu=t4:1", "export": "cpu=96,memory=624G"},
    )
    # One document: Vertex reads a single PipelineSpec and has no use for kfp-kubernetes settings.
    assert len(docs) == 1

    train = _resources(docs, "train-step")
    assert (train.accelerator.resource_type, train.accelerator.resource_count) == ("NVIDIA_L4", "2")
    assert (train.resource_cpu_limit, train.resource_memory_limit) == ("16", "64G")
    assert (train.resource_cpu_request, train.resource_memory_request) == ("", "")
    evaluate = _resources(docs, "eval-step")
    assert (evaluate.accelerator.resource_type, evaluate.accelerator.resource_count) == ("NVIDIA_TESLA_T4", "1")
    assert evaluate.resource_memory_limit == "16Gi"
    export = _resources(docs, "export-step")
    assert (export.resource_cpu_limit, export.resource_memory_limit) == ("96", "624G")
    assert not export.HasField("accelerator")


def test_apply_profile_rejects_while_the_pipeline_is_defined():
    tpu = parse_profile("tpu=v5e:2x2", step="train")
    with pytest.raises(ResourceProfileError, match=r"step 'train': tpu=v5e:2x2 cannot be asked of Vertex"):

        @dsl.pipeline(name="rejected")
        def pipeline():
            apply_profile(train_step(steps=1), tpu, backend="vertex")


# ----------------------------------------------------------------------------------------------------------------
# Vertex custom-job route.
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, options, expected",
    [
        (
            "cpu=8,memory=32G,gpu=l4:1,spot",
            {},
            dict(machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=1, strategy="SPOT"),
        ),
        ("gpu=l4:1", {}, dict(machine_type="g2-standard-4", accelerator_count=1)),
        ("gpu=l4:8", {}, dict(machine_type="g2-standard-96", accelerator_count=8)),
        (
            "cpu=30,gpu=t4:2",
            {"replica_count": 3},
            dict(machine_type="n1-standard-32", accelerator_type="NVIDIA_TESLA_T4", replica_count=3),
        ),
        ("gpu=v100:1", {}, dict(machine_type="n1-standard-4")),
        ("gpu=a100:16", {}, dict(machine_type="a2-megagpu-16g", accelerator_type="NVIDIA_TESLA_A100")),
        ("memory=300G,gpu=a100-80gb:2", {}, dict(machine_type="a2-ultragpu-2g", accelerator_type="NVIDIA_A100_80GB")),
        ("gpu=h100:8", {}, dict(machine_type="a3-highgpu-8g", accelerator_type="NVIDIA_H100_80GB")),
        ("gpu=h200:8", {"machine_type": "a3-ultragpu-8g"}, dict(machine_type="a3-ultragpu-8g")),
        ("gpu=t4:1", {"machine_type": "n1-highmem-8"}, dict(machine_type="n1-highmem-8")),
        (
            "tpu=v5e:2x2,spot",
            {},
            dict(
                machine_type="ct5lp-hightpu-4t",
                accelerator_type="TPU_V5_LITEPOD",
                accelerator_count=4,
                tpu_topology="2x2",
                strategy="SPOT",
            ),
        ),
        ("tpu=v5e:2x4", {}, dict(machine_type="ct5lp-hightpu-8t", accelerator_count=8, tpu_topology="2x4")),
        ("tpu=v4:2x2x1", {}, dict(machine_type="ct4p-hightpu-4t", accelerator_type="TPU_V4_POD", accelerator_count=4)),
        ("tpu=v3:2x2", {}, dict(machine_type="cloud-tpu", accelerator_type="TPU_V3", accelerator_count=8)),
        ("cpu=8", {}, dict(machine_type="n1-standard-8", accelerator_type="", accelerator_count=0)),
        ("cpu=8,memory=100G", {}, dict(machine_type="n1-standard-32")),
        (
            "",
            {"machine_type": "n2-highmem-16"},
            dict(machine_type="n2-highmem-16", strategy="STANDARD", replica_count=1),
        ),
    ],
)
def test_vertex_custom_job_spec(spec: str, options: dict, expected: dict):
    result = vertex_custom_job_spec(parse_profile(spec, step="train"), **options)
    assert {k: result[k] for k in expected} == expected
    assert set(result) >= {"machine_type", "accelerator_type", "accelerator_count", "replica_count", "strategy"}
    assert ("tpu_topology" in result) == ("tpu=" in spec)


@pytest.mark.parametrize(
    "spec, options, fragments",
    [
        (
            "tpu=v5p:2x2x1",
            {},
            ["tpu v5p has no Vertex AI accelerator type", "accepted on vertex: v2, v3, v4, v5e", "backend gke"],
        ),
        ("tpu=v6e:2x2", {}, ["tpu v6e has no Vertex AI accelerator type"]),
        ("tpu=v5e:8x8", {}, ["topology 8x8 of v5e spans several hosts", "1x1, 2x2, 2x4"]),
        ("tpu=v5e:2x2", {"replica_count": 2}, ["replica_count 2 with a TPU", "accepted: 1"]),
        (
            "tpu=v5e:2x2",
            {"machine_type": "ct5lp-hightpu-8t"},
            ["machine_type 'ct5lp-hightpu-8t' does not hold tpu v5e:2x2", "accepted: ct5lp-hightpu-4t"],
        ),
        (
            "gpu=l4:1",
            {"machine_type": "a2-highgpu-1g"},
            ["machine_type 'a2-highgpu-1g' does not carry 1 x l4", "accepted: g2-standard-4, g2-standard-8"],
        ),
        ("gpu=a100:2", {"machine_type": "a2-highgpu-1g"}, ["does not carry 2 x a100", "accepted: a2-highgpu-2g"]),
        ("gpu=t4:1", {"machine_type": "g2-standard-8"}, ["cannot carry gpu t4", "N1 machine type (n1-*)"]),
        ("gpu=v100:1", {"machine_type": "n1-standard-32"}, ["32 vCPUs, more than 1 x v100 allow", "at most 12 vCPUs"]),
        (
            "cpu=32,gpu=v100:1",
            {},
            [
                "cpu=32 do not fit any machine with 1 x v100",
                "at most 8 vCPUs and 30 GB",
                "n1-* machine_type of at most 12 vCPUs",
            ],
        ),
        (
            "cpu=16,gpu=a100:1",
            {"machine_type": "a2-highgpu-1g"},
            ["'a2-highgpu-1g' has 12 vCPUs and 85 GB, less than cpu=16"],
        ),
        ("cpu=8", {"machine_type": "a2-highgpu-1g"}, ["comes with accelerators, but the profile asks for none"]),
        ("cpu=8", {"machine_type": "N1 standard"}, ["machine_type 'N1 standard' is malformed"]),
        ("cpu=200", {}, ["cpu=200 do not fit the default n1-standard shapes", "pass machine_type explicitly"]),
        ("memory=2T,gpu=l4:1", {}, ["memory=2T do not fit any machine with 1 x l4", "at most 32 vCPUs and 128 GB"]),
        ("cpu=8", {"replica_count": 0}, ["replica_count 0 is not a positive integer"]),
    ],
)
def test_vertex_custom_job_spec_rejects(spec: str, options: dict, fragments: list[str]):
    with pytest.raises(ResourceProfileError) as caught:
        vertex_custom_job_spec(parse_profile(spec, step="train"), **options)
    assert str(caught.value).startswith("resource profile for step 'train': ")
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_custom_job_component_without_gcpc_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components.v1.custom_job", None)
    with pytest.raises(ImportError, match=r"pip install 'tfpipe\[vertex-custom-job\]'"):
        vertex_custom_job_component(train_step, parse_profile("tpu=v5e:2x2", step="train"))


def test_custom_job_component_passes_the_profile_and_sets_the_tpu_topology(tmp_path: Path):
    tpu_job = vertex_custom_job_component(
        train_step, parse_profile("tpu=v5e:2x2,spot", step="train"), service_account="sa@p.iam.gserviceaccount.com"
    )
    gpu_job = vertex_custom_job_component(eval_step, parse_profile("cpu=16,gpu=a100:2", step="eval"), replica_count=3)
    cpu_job = vertex_custom_job_component(export_step, parse_profile("cpu=8", step="export"))

    @dsl.pipeline(name="custom-jobs")
    def pipeline():
        tpu_job(steps=1)
        gpu_job(step=1)
        cpu_job(step=1, project="proj", location="us-central1")

    path = tmp_path / "custom.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = yaml.safe_load(path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    jobs = {spec["root"]["dag"]["tasks"][t]["componentRef"]["name"]: t for t in ("train-step", "eval-step", "export-step")}
    inputs = {task: spec["components"][name]["inputDefinitions"]["parameters"] for name, task in jobs.items()}
    pools = {task: parameters["worker_pool_specs"]["defaultValue"] for task, parameters in inputs.items()}
    assert [p["machine_spec"] for p in pools["train-step"]] == [{
        "machine_type": "ct5lp-hightpu-4t", "accelerator_type": "TPU_V5_LITEPOD", "accelerator_count": 4.0,
        "tpu_topology": "2x2"}]
    assert inputs["train-step"]["strategy"]["defaultValue"] == "SPOT"
    assert inputs["train-step"]["service_account"]["defaultValue"] == "sa@p.iam.gserviceaccount.com"
    assert [p["replica_count"] for p in pools["eval-step"]] == [1, 2]
    assert {p["machine_spec"]["machine_type"] for p in pools["eval-step"]} == {"a2-highgpu-2g"}
    assert pools["export-step"][0]["machine_spec"] == {"machine_type": "n1-standard-8"}
    assert inputs["export-step"]["strategy"]["defaultValue"] == "STANDARD"
    assert all("tpu_topology" not in p["machine_spec"] for p in pools["eval-step"] + pools["export-step"])


def test_custom_job_component_refuses_resource_options_that_bypass_the_profile():
    with pytest.raises(ResourceProfileError, match=r"custom_job_options accelerator_type, strategy would override"):
        vertex_custom_job_component(
            train_step, parse_profile("gpu=l4:1", step="train"), accelerator_type="NVIDIA_L4", strategy="SPOT"
        )
