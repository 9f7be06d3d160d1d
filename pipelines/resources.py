"""Per-step resource profiles (CPU, memory, GPU, TPU, spot) and how GKE and Vertex AI express them.

A profile is written once per step, as text or a mapping::

    parse_profile("cpu=8,memory=32G,gpu=l4:1,spot", step="train")
    parse_profile({"cpu": 4, "memory": "16Gi", "tpu": "v5e:2x2"}, step="train")

and applied to a KFP task for one backend::

    apply_profile(task, profile, backend="gke")     # k8s resource names + node selectors/tolerations
    apply_profile(task, profile, backend="vertex")  # Vertex accelerator enums via task setters

Vertex pipeline task setters cannot ask for TPUs, spot capacity, a machine type or several replicas: those take
the custom-job route (`vertex_custom_job_spec`, `vertex_custom_job_component`, which needs the optional
`google-cloud-pipeline-components` package, `pip install tfpipe[vertex-custom-job]`).

Everything is validated before a pipeline is compiled; errors name the step, echo the bad value and list what
is accepted.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl, kubernetes

from tfpipe import checks

BACKENDS = ("gke", "vertex")
PROFILE_KEYS = ("cpu", "memory", "gpu", "tpu", "spot")

# Vertex AI Pipelines caps for task-level `set_cpu_limit` / `set_memory_limit` (Vertex docs, "Specify machine
# types for a pipeline step"): 96 vCPUs and 624 GB.
VERTEX_MAX_CPU = 96.0
VERTEX_MAX_MEMORY_BYTES = 624 * 10**9

GKE_GPU_RESOURCE = "nvidia.com/gpu"
GKE_TPU_RESOURCE = "google.com/tpu"
GKE_GPU_LABEL = "cloud.google.com/gke-accelerator"
GKE_TPU_LABEL = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
GKE_SPOT_LABEL = "cloud.google.com/gke-spot"

CUSTOM_JOB_EXTRA = "pip install tfpipe[vertex-custom-job]"


class ResourceProfileError(ValueError):
    """A resource profile that is malformed, or that a backend cannot give."""


# --------------------------------------------------------------------------------------------------------------
# Fact tables.
#
# Sources: Google Cloud docs "GPU machine types" (Compute Engine), "About GPUs in GKE" / "Plan TPUs in GKE",
# Vertex AI "Configure compute resources for custom training" and "Training with TPU VMs"; the AcceleratorType
# enum of google-cloud-aiplatform 2.7.0 (`aiplatform_v1.types.AcceleratorType`), which has no TPU v5p or v6e
# member. Cloud offerings change: regional availability, quota and spot/flex-start-only shapes are NOT modelled.
# Less certain entries are marked "(uncertain)". Update this table, not the code, when offerings change.
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GpuType:
    """One GPU model as GKE and Vertex AI name it.

    Attributes:
        name: The canonical short name used in profiles (`l4`, `a100-80gb`).
        gke_label: The `cloud.google.com/gke-accelerator` node label value.
        vertex_accelerator: The Vertex AI `AcceleratorType` enum name.
        counts: GPUs per machine that some machine type offers (a KFP task is one machine).
        aliases: Other accepted spellings (the GKE label and Vertex enum are always accepted too).
    """

    name: str
    gke_label: str
    vertex_accelerator: str
    counts: tuple[int, ...]
    aliases: tuple[str, ...] = ()


GPU_TYPES: Mapping[str, GpuType] = {
    g.name: g
    for g in (
        # N1 + GPU (any N1 shape up to a vCPU cap per GPU count, see _N1_MAX_VCPUS).
        GpuType("t4", "nvidia-tesla-t4", "NVIDIA_TESLA_T4", (1, 2, 4), ("tesla-t4",)),
        GpuType("p4", "nvidia-tesla-p4", "NVIDIA_TESLA_P4", (1, 2, 4), ("tesla-p4",)),
        GpuType("p100", "nvidia-tesla-p100", "NVIDIA_TESLA_P100", (1, 2, 4), ("tesla-p100",)),
        GpuType("v100", "nvidia-tesla-v100", "NVIDIA_TESLA_V100", (1, 2, 4, 8), ("tesla-v100",)),
        # Fixed GPU machine shapes (see _GPU_MACHINES).
        GpuType("l4", "nvidia-l4", "NVIDIA_L4", (1, 2, 4, 8)),
        GpuType("a100", "nvidia-tesla-a100", "NVIDIA_TESLA_A100", (1, 2, 4, 8, 16), ("a100-40gb", "tesla-a100")),
        GpuType("a100-80gb", "nvidia-a100-80gb", "NVIDIA_A100_80GB", (1, 2, 4, 8)),
        # a3-highgpu-1g/2g/4g exist but are offered for spot/flex-start capacity only (uncertain on Vertex).
        GpuType("h100-80gb", "nvidia-h100-80gb", "NVIDIA_H100_80GB", (1, 2, 4, 8), ("h100",)),
        GpuType("h100-mega-80gb", "nvidia-h100-mega-80gb", "NVIDIA_H100_MEGA_80GB", (8,), ("h100-mega",)),
        GpuType("h200-141gb", "nvidia-h200-141gb", "NVIDIA_H200_141GB", (8,), ("h200",)),
        GpuType("b200", "nvidia-b200", "NVIDIA_B200", (8,)),
    )
}


@dataclasses.dataclass(frozen=True)
class MachineShape:
    """A Compute Engine machine type that a Vertex custom job can ask for.

    Attributes:
        machine_type: The machine type name.
        vcpus: Its vCPUs.
        memory_gb: Its memory in GB (10**9 bytes).
        gpus: GPUs that come with it (0 for N1, where GPUs are attached separately).
    """

    machine_type: str
    vcpus: int
    memory_gb: float
    gpus: int = 0


# n1-standard-N: N vCPUs, 3.75 GB per vCPU. Also the CPU-only default on the custom-job route.
_N1_STANDARD = tuple(MachineShape(f"n1-standard-{n}", n, 3.75 * n) for n in (4, 8, 16, 32, 64, 96))
# Largest N1 shape (vCPUs) that takes N GPUs of a type (Compute Engine "GPU machine types", N1 section).
_N1_MAX_VCPUS: Mapping[str, Mapping[int, int]] = {
    "t4": {1: 48, 2: 48, 4: 96},
    "p4": {1: 24, 2: 48, 4: 96},
    "p100": {1: 16, 2: 32, 4: 64},  # 4 x P100 up to 96 vCPUs in some zones (uncertain): 64 is safe.
    "v100": {1: 12, 2: 24, 4: 48, 8: 96},
}


def _shapes(family: str, rows: tuple[tuple[str, int, float, int], ...]) -> tuple[MachineShape, ...]:
    return tuple(MachineShape(f"{family}-{suffix}", cpus, mem, gpus) for suffix, cpus, mem, gpus in rows)


# Machine types whose GPU count is fixed by the shape (suffix, vCPUs, memory GB, GPUs).
_GPU_MACHINES: Mapping[str, tuple[MachineShape, ...]] = {
    "l4": _shapes(
        "g2-standard",
        (
            ("4", 4, 16, 1), ("8", 8, 32, 1), ("12", 12, 48, 1), ("16", 16, 64, 1), ("32", 32, 128, 1),
            ("24", 24, 96, 2), ("48", 48, 192, 4), ("96", 96, 384, 8),
        ),
    ),
    "a100": _shapes("a2-highgpu", (("1g", 12, 85, 1), ("2g", 24, 170, 2), ("4g", 48, 340, 4), ("8g", 96, 680, 8)))
    + _shapes("a2-megagpu", (("16g", 96, 1360, 16),)),
    "a100-80gb": _shapes(
        "a2-ultragpu", (("1g", 12, 170, 1), ("2g", 24, 340, 2), ("4g", 48, 680, 4), ("8g", 96, 1360, 8))
    ),
    "h100-80gb": _shapes(
        "a3-highgpu", (("1g", 26, 234, 1), ("2g", 52, 468, 2), ("4g", 104, 936, 4), ("8g", 208, 1872, 8))
    ),
    "h100-mega-80gb": _shapes("a3-megagpu", (("8g", 208, 1872, 8),)),
    "h200-141gb": _shapes("a3-ultragpu", (("8g", 224, 2952, 8),)),
    "b200": _shapes("a4-highgpu", (("8g", 224, 3968, 8),)),  # (uncertain: memory)
}


@dataclasses.dataclass(frozen=True)
class TpuHost:
    """The one machine that holds a single-host TPU slice.

    Attributes:
        machine_type: The GKE node / Vertex machine type.
        chips: TPU chips on it (the value of GKE's `google.com/tpu` resource).
        vertex_accelerator_count: Vertex `accelerator_count` (TensorCores for legacy v2/v3, else chips).
    """

    machine_type: str
    chips: int
    vertex_accelerator_count: int


@dataclasses.dataclass(frozen=True)
class TpuType:
    """One TPU generation as GKE and Vertex AI name it.

    Attributes:
        name: The canonical short name used in profiles (`v5e`).
        gke_label: The `cloud.google.com/gke-tpu-accelerator` value, or None when GKE has no node pools of it.
        vertex_accelerator: The Vertex `AcceleratorType` enum name, or None when Vertex has none.
        dimensions: 2 for 2-D topologies (`2x2`), 3 for 3-D ones (`2x2x1`).
        single_host: Topologies that fit one machine (one pod, one KFP task), and that machine.
        multi_host: Valid topologies that span several machines (need a TFJob/JobSet, not one KFP task).
        aliases: Other accepted spellings.
    """

    name: str
    gke_label: str | None
    vertex_accelerator: str | None
    dimensions: int
    single_host: Mapping[str, TpuHost]
    multi_host: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def topologies(self) -> tuple[str, ...]:
        """All topologies this table knows for the type, single-host first."""
        return tuple(self.single_host) + self.multi_host


_3D_MULTI_HOST = (
    "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8", "8x8x12", "8x8x16", "8x16x16",
    "12x16x16", "16x16x16",
)  # GKE "Plan TPUs" lists more large shapes for v4/v5p; these cover the common ones (uncertain beyond 4x4x4).
_2D_MULTI_HOST = ("4x4", "4x8", "8x8", "8x16", "16x16")

# Vertex custom jobs on TPU VM machine types (ct4p/ct5lp/...): the request carries machine_type, accelerator_type,
# accelerator_count (= chips) and tpu_topology. Whether Vertex needs the type/count besides the machine type is
# not confirmed here (uncertain); the values are consistent with the machine either way.
TPU_TYPES: Mapping[str, TpuType] = {
    t.name: t
    for t in (
        # Legacy TPU nodes: Vertex only, machine_type "cloud-tpu", accelerator_count in TensorCores (v2-8/v3-8).
        # Reported flaky on Vertex Pipelines (python-aiplatform#2231). Pod slices of v2/v3 are not modelled.
        TpuType("v2", None, "TPU_V2", 2, {"2x2": TpuHost("cloud-tpu", 4, 8)}, ()),
        TpuType("v3", None, "TPU_V3", 2, {"2x2": TpuHost("cloud-tpu", 4, 8)}, ()),
        TpuType(
            "v4", "tpu-v4-podslice", "TPU_V4_POD", 3,
            {"2x2x1": TpuHost("ct4p-hightpu-4t", 4, 4)}, _3D_MULTI_HOST, ("tpu-v4-podslice",),
        ),
        TpuType(
            "v5e", "tpu-v5-lite-podslice", "TPU_V5_LITEPOD", 2,
            {
                "1x1": TpuHost("ct5lp-hightpu-1t", 1, 1),
                "2x2": TpuHost("ct5lp-hightpu-4t", 4, 4),
                "2x4": TpuHost("ct5lp-hightpu-8t", 8, 8),  # single host only on the 8-chip machine type.
            },
            _2D_MULTI_HOST, ("v5litepod", "v5-lite", "tpu-v5-lite-podslice"),
        ),
        TpuType(
            "v5p", "tpu-v5p-slice", None, 3,
            {"2x2x1": TpuHost("ct5p-hightpu-4t", 4, 4)}, _3D_MULTI_HOST, ("tpu-v5p-slice",),
        ),
        TpuType(
            "v6e", "tpu-v6e-slice", None, 2,
            {
                "1x1": TpuHost("ct6e-standard-1t", 1, 1),
                "2x2": TpuHost("ct6e-standard-4t", 4, 4),
                "2x4": TpuHost("ct6e-standard-8t", 8, 8),
            },
            _2D_MULTI_HOST, ("trillium", "tpu-v6e-slice"),
        ),
    )
}


def _alias_index(table: Mapping[str, Any], *extra_fields: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, entry in table.items():
        spellings = [name, *entry.aliases] + [getattr(entry, f) for f in extra_fields]
        for spelling in spellings:
            if spelling:
                index[spelling.lower().replace("_", "-")] = name
    return index


_GPU_ALIASES = _alias_index(GPU_TYPES, "gke_label", "vertex_accelerator")
_TPU_ALIASES = _alias_index(TPU_TYPES)


# --------------------------------------------------------------------------------------------------------------
# Values.
# --------------------------------------------------------------------------------------------------------------

_CPU_RE = re.compile(r"^([0-9]*[.])?[0-9]+m?$")  # what kfp's set_cpu_limit accepts
_MEMORY_RE = re.compile(r"^([0-9]+)(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")  # what kfp's set_memory_limit accepts
_MEMORY_FACTORS = {
    None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_TOPOLOGY_RE = re.compile(r"^[1-9][0-9]*(x[1-9][0-9]*){1,2}$")


def cpu_cores(cpu: str) -> float:
    """Returns the cores a Kubernetes-style CPU quantity means (`"8"` -> 8.0, `"500m"` -> 0.5).

    Args:
        cpu: A CPU quantity: a decimal number of cores, or millicores ending in `m`.

    Raises:
        ResourceProfileError: If `cpu` is malformed.
    """
    if not isinstance(cpu, str) or not _CPU_RE.match(cpu):
        raise ResourceProfileError(
            f"cpu {cpu!r} is malformed; accepted: a number of cores ('8', '0.5') or millicores ('500m')"
        )
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def memory_bytes(memory: str) -> int:
    """Returns the bytes a Kubernetes-style memory quantity means (`"32G"` -> 32e9, `"16Gi"` -> 16 * 2**30).

    Args:
        memory: An integer with an optional unit: K, M, G, T, P, E (powers of 1000) or Ki ... Ei (of 1024).

    Raises:
        ResourceProfileError: If `memory` is malformed.
    """
    match = _MEMORY_RE.match(memory) if isinstance(memory, str) else None
    if not match:
        raise ResourceProfileError(
            f"memory {memory!r} is malformed; accepted: an integer with an optional unit "
            f"K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei (e.g. '32G', '16Gi')"
        )
    return int(match.group(1)) * _MEMORY_FACTORS[match.group(2)]


# --------------------------------------------------------------------------------------------------------------
# Profiles.
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GpuRequest:
    """GPUs for one step: a type from `GPU_TYPES` (or an alias) and a count per machine."""

    type: str
    count: int

    @property
    def spec(self) -> GpuType:
        """The table entry of this GPU type (after the profile normalised `type`)."""
        return GPU_TYPES[self.type]


@dataclasses.dataclass(frozen=True)
class TpuRequest:
    """A TPU slice for one step: a type from `TPU_TYPES` (or an alias) and a topology such as `2x2`."""

    type: str
    topology: str

    @property
    def spec(self) -> TpuType:
        """The table entry of this TPU type (after the profile normalised `type`)."""
        return TPU_TYPES[self.type]

    @property
    def chips(self) -> int:
        """Chips in the slice: the product of the topology's dimensions."""
        return math.prod(int(d) for d in self.topology.split("x"))

    @property
    def host(self) -> TpuHost | None:
        """The one machine holding the slice, or None for a multi-host topology."""
        return self.spec.single_host.get(self.topology)


@dataclasses.dataclass(frozen=True)
class ResourceProfile:
    """What one pipeline step (train, evaluate, export, ...) asks of the machine it runs on.

    Build it with `parse_profile`; direct construction validates and normalises the same way.

    Attributes:
        step: The step the profile is for; named in every error.
        cpu: CPU quantity (`"8"`, `"500m"`), or None for the backend default.
        memory: Memory quantity (`"32G"`, `"16Gi"`), or None for the backend default.
        gpu: GPUs, or None.
        tpu: A TPU slice, or None. Exclusive with `gpu`. Backends accept single-host slices only (one task
            is one pod / machine); `validate_for_backend` says so for multi-host ones.
        spot: Run on spot (preemptible) capacity.
    """

    step: str
    cpu: str | None = None
    memory: str | None = None
    gpu: GpuRequest | None = None
    tpu: TpuRequest | None = None
    spot: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.step, str) or not self.step.strip():
            raise ResourceProfileError(f"step {self.step!r} is invalid; accepted: a non-empty step name")
        try:
            set_ = object.__setattr__
            set_(self, "cpu", _normalize_cpu(self.cpu))
            set_(self, "memory", _normalize_memory(self.memory))
            set_(self, "gpu", _normalize_gpu(self.gpu))
            set_(self, "tpu", _normalize_tpu(self.tpu))
            set_(self, "spot", _parse_bool("spot", self.spot))
            if self.gpu is not None and self.tpu is not None:
                raise ResourceProfileError(
                    f"gpu={self.gpu.type}:{self.gpu.count} and tpu={self.tpu.type}:{self.tpu.topology} "
                    "are both set; accepted: at most one of gpu and tpu per step"
                )
        except ResourceProfileError as error:
            raise _for_step(self.step, error) from None

    def to_spec(self) -> str:
        """Returns the profile as the text `parse_profile` reads (e.g. `cpu=8,memory=32G,gpu=l4:1,spot`)."""
        parts = []
        if self.cpu is not None:
            parts.append(f"cpu={self.cpu}")
        if self.memory is not None:
            parts.append(f"memory={self.memory}")
        if self.gpu is not None:
            parts.append(f"gpu={self.gpu.type}:{self.gpu.count}")
        if self.tpu is not None:
            parts.append(f"tpu={self.tpu.type}:{self.tpu.topology}")
        if self.spot:
            parts.append("spot")
        return ",".join(parts)


def _for_step(step: str, error: ResourceProfileError) -> ResourceProfileError:
    return ResourceProfileError(f"resource profile for step {step!r}: {error}")


def _normalize_cpu(cpu: Any) -> str | None:
    if cpu is None:
        return None
    if isinstance(cpu, bool) or not isinstance(cpu, (str, int, float)):
        raise ResourceProfileError(f"cpu {cpu!r} is malformed; accepted: '8', '0.5', '500m' or a number")
    text = str(cpu).strip()
    if cpu_cores(text) <= 0:
        raise ResourceProfileError(f"cpu {cpu!r} is not positive; accepted: more than 0 cores")
    return text


def _normalize_memory(memory: Any) -> str | None:
    if memory is None:
        return None
    if isinstance(memory, bool) or not isinstance(memory, (str, int)):
        raise ResourceProfileError(f"memory {memory!r} is malformed; accepted: e.g. '32G', '16Gi'")
    text = str(memory).strip()
    if memory_bytes(text) <= 0:
        raise ResourceProfileError(f"memory {memory!r} is not positive; accepted: more than 0 bytes")
    return text


def _normalize_gpu(gpu: Any) -> GpuRequest | None:
    if gpu is None:
        return None
    gpu_type: Any
    count: Any
    if isinstance(gpu, str):
        gpu_type, count = _split_pair("gpu", gpu, "<type>:<count>, e.g. l4:1")
    elif isinstance(gpu, GpuRequest):
        gpu_type, count = gpu.type, gpu.count
    elif isinstance(gpu, Mapping):
        _check_keys("gpu", gpu, ("type", "count"))
        gpu_type, count = gpu.get("type"), gpu.get("count")
    else:
        raise ResourceProfileError(
            f"gpu {gpu!r} is malformed; accepted: '<type>:<count>' or {{'type': ..., 'count': ...}}"
        )
    name = _GPU_ALIASES.get(str(gpu_type).strip().lower().replace("_", "-"))
    if name is None:
        raise ResourceProfileError(
            f"gpu type {gpu_type!r} is unknown; accepted: {', '.join(GPU_TYPES)} "
            "(or their GKE label / Vertex enum names)"
        )
    number = _parse_count(f"gpu count for {name}", count)
    accepted = GPU_TYPES[name].counts
    if number not in accepted:
        raise ResourceProfileError(
            f"gpu count {number} for {name} is not offered by any machine; accepted counts for {name}: "
            f"{', '.join(map(str, accepted))}"
        )
    return GpuRequest(name, number)


def _normalize_tpu(tpu: Any) -> TpuRequest | None:
    if tpu is None:
        return None
    tpu_type: Any
    topology: Any
    chips: Any = None
    if isinstance(tpu, str):
        parts = [p.strip() for p in tpu.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ResourceProfileError(
                f"tpu {tpu!r} is malformed; accepted: '<type>:<topology>[:<chips>]', e.g. v5e:2x2 or v4:2x2x1:4"
            )
        tpu_type, topology = parts[0], parts[1]
        chips = parts[2] if len(parts) == 3 else None
    elif isinstance(tpu, TpuRequest):
        tpu_type, topology = tpu.type, tpu.topology
    elif isinstance(tpu, Mapping):
        _check_keys("tpu", tpu, ("type", "topology", "chips"))
        tpu_type, topology, chips = tpu.get("type"), tpu.get("topology"), tpu.get("chips")
    else:
        raise ResourceProfileError(
            f"tpu {tpu!r} is malformed; accepted: '<type>:<topology>' or {{'type': ..., 'topology': ...}}"
        )
    name = _TPU_ALIASES.get(str(tpu_type).strip().lower().replace("_", "-"))
    if name is None:
        raise ResourceProfileError(f"tpu type {tpu_type!r} is unknown; accepted: {', '.join(TPU_TYPES)}")
    spec = TPU_TYPES[name]
    topology = str(topology).strip().lower()
    shape = "x".join(["2"] * spec.dimensions)
    if not _TOPOLOGY_RE.match(topology) or len(topology.split("x")) != spec.dimensions:
        raise ResourceProfileError(
            f"tpu topology {topology!r} for {name} is not a {spec.dimensions}-D topology; accepted: topologies "
            f"like {shape}; single-host for {name}: {', '.join(spec.single_host)}"
        )
    if topology not in spec.topologies:
        multi = f"; multi-host: {', '.join(spec.multi_host)}" if spec.multi_host else ""
        raise ResourceProfileError(
            f"tpu topology {topology!r} is not a valid topology for {name}; accepted single-host: "
            f"{', '.join(spec.single_host)}{multi}"
        )
    request = TpuRequest(name, topology)
    if chips is not None and _parse_count("tpu chips", chips) != request.chips:
        raise ResourceProfileError(
            f"tpu chips {chips!r} do not match topology {topology} of {name}, which has {request.chips} chips; "
            f"accepted: {request.chips} (or leave chips out)"
        )
    return request


def _split_pair(key: str, text: str, form: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts):
        raise ResourceProfileError(f"{key} {text!r} is malformed; accepted: {form}")
    return parts[0], parts[1]


def _parse_count(what: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ResourceProfileError(f"{what} {value!r} is not a whole number; accepted: a positive integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise ResourceProfileError(f"{what} {value!r} is not a positive integer; accepted: a positive integer")
    return value


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ResourceProfileError(f"{key} {value!r} is not a boolean; accepted: true/false (or a bare '{key}')")


def _check_keys(what: str, mapping: Mapping[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = [k for k in mapping if k not in accepted]
    if unknown:
        raise ResourceProfileError(
            f"unknown {what} key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}"
        )


def parse_profile(
    spec: str | Mapping[str, Any] | ResourceProfile | None, *, step: str
) -> ResourceProfile:
    """Parses a step's resource profile.

    Text form: comma-separated `key=value` items, keys `cpu`, `memory`, `gpu=<type>:<count>`,
    `tpu=<type>:<topology>[:<chips>]` and `spot` (bare, or `spot=true|false`), e.g.
    `"cpu=8,memory=32G,gpu=l4:1,spot"`. Mapping form: the same keys; `gpu` and `tpu` may also be mappings
    (`{"type": "l4", "count": 1}`, `{"type": "v5e", "topology": "2x2"}`). None or `""` is an empty profile
    (backend defaults).

    Args:
        spec: The profile text, mapping, or an existing profile (re-validated for `step`).
        step: The step the profile is for (named in errors).

    Returns:
        The validated, normalised profile.

    Raises:
        ResourceProfileError: For a malformed or unknown key or value, naming it and what is accepted.
    """
    if isinstance(spec, ResourceProfile):
        return dataclasses.replace(spec, step=step)
    if spec is None:
        return ResourceProfile(step=step)
    if isinstance(spec, str):
        fields = _parse_text(spec, step)
    elif isinstance(spec, Mapping):
        try:
            _check_keys("profile", spec, PROFILE_KEYS)
        except ResourceProfileError as error:
            raise _for_step(step, error) from None
        fields = dict(spec)
    else:
        raise ResourceProfileError(
            f"resource profile for step {step!r}: {spec!r} is neither text nor a mapping; accepted: "
            "'cpu=8,memory=32G,gpu=l4:1,spot' or {'cpu': '8', ...}"
        )
    return ResourceProfile(step=step, **fields)


def _parse_text(spec: str, step: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        error = None
        if key not in PROFILE_KEYS:
            error = f"unknown key {key!r} in {spec!r}; accepted: {', '.join(PROFILE_KEYS)}"
        elif key in fields:
            error = f"key {key!r} is given twice in {spec!r}; accepted: each key once"
        elif not sep and key != "spot":
            error = f"{item!r} has no value; accepted: {key}=<value>"
        if error:
            raise ResourceProfileError(f"resource profile for step {step!r}: {error}")
        fields[key] = value.strip() if sep else True
    return fields


# --------------------------------------------------------------------------------------------------------------
# Backends.
# --------------------------------------------------------------------------------------------------------------


def validate_for_backend(profile: ResourceProfile, *, backend: str, custom_job: bool = False) -> None:
    """Checks that `backend` can give `profile` to one task (one pod / one machine).

    Args:
        profile: The profile.
        backend: `gke` or `vertex`.
        custom_job: For `vertex`: check for the custom-job route instead of the task setters.

    Raises:
        ResourceProfileError: If the backend cannot give the profile, saying what it accepts and where to go.
    """
    _check_backend(backend)
    try:
        if backend == "gke":
            _validate_gke(profile)
        elif custom_job:
            _validate_vertex_custom_job(profile)
        else:
            _validate_vertex_task(profile)
    except ResourceProfileError as error:
        raise _for_step(profile.step, error) from None


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ResourceProfileError(f"backend {backend!r} is unknown; accepted: {', '.join(BACKENDS)}")


def _validate_gke(profile: ResourceProfile) -> None:
    tpu = profile.tpu
    if tpu is None:
        return
    if tpu.spec.gke_label is None:
        on_gke = [t.name for t in TPU_TYPES.values() if t.gke_label]
        raise ResourceProfileError(
            f"tpu {tpu.type} is not offered in GKE node pools; accepted on gke: {', '.join(on_gke)} "
            f"({tpu.type} runs on backend vertex through the custom-job route)"
        )
    if tpu.host is None:
        raise ResourceProfileError(
            f"tpu topology {tpu.topology} of {tpu.type} spans several hosts, but a KFP task is one pod; accepted "
            f"single-host topologies: {', '.join(tpu.spec.single_host)}; for a multi-host slice launch a "
            "TFJob/JobSet (Kubeflow Trainer) from a component instead"
        )


def _validate_vertex_task(profile: ResourceProfile) -> None:
    route = (
        "use the custom-job route (vertex_custom_job_spec / vertex_custom_job_component, "
        f"`{CUSTOM_JOB_EXTRA}`)"
    )
    if profile.tpu is not None:
        raise ResourceProfileError(
            f"tpu={profile.tpu.type}:{profile.tpu.topology} cannot be asked of Vertex pipeline task setters; "
            f"accepted there: cpu, memory, gpu; {route}"
        )
    if profile.spot:
        raise ResourceProfileError(
            f"spot cannot be asked of Vertex pipeline task setters; accepted there: cpu, memory, gpu; {route}"
        )
    if profile.cpu is not None and cpu_cores(profile.cpu) > VERTEX_MAX_CPU:
        raise ResourceProfileError(
            f"cpu {profile.cpu!r} exceeds the Vertex pipeline task limit; accepted: at most "
            f"{VERTEX_MAX_CPU:g} cores (or {route})"
        )
    if profile.memory is not None and memory_bytes(profile.memory) > VERTEX_MAX_MEMORY_BYTES:
        raise ResourceProfileError(
            f"memory {profile.memory!r} exceeds the Vertex pipeline task limit; accepted: at most 624G "
            f"(or {route})"
        )


def _validate_vertex_custom_job(profile: ResourceProfile) -> None:
    tpu = profile.tpu
    if tpu is None:
        return
    if tpu.spec.vertex_accelerator is None:
        on_vertex = [t.name for t in TPU_TYPES.values() if t.vertex_accelerator]
        raise ResourceProfileError(
            f"tpu {tpu.type} has no Vertex AI accelerator type; accepted on vertex: {', '.join(on_vertex)} "
            f"(run {tpu.type} on backend gke)"
        )
    if tpu.host is None:
        raise ResourceProfileError(
            f"tpu topology {tpu.topology} of {tpu.type} spans several hosts; accepted here (one machine per "
            f"replica): {', '.join(tpu.spec.single_host)}"
        )


def apply_profile(task: dsl.PipelineTask, profile: ResourceProfile, *, backend: str) -> dsl.PipelineTask:
    """Applies `profile` to a pipeline task for `backend`.

    gke: CPU/memory requests = limits; GPUs as `nvidia.com/gpu` with a `cloud.google.com/gke-accelerator` node
    selector; TPUs as `google.com/tpu` (chips on the host) with `cloud.google.com/gke-tpu-accelerator` and
    `cloud.google.com/gke-tpu-topology` selectors; spot as `cloud.google.com/gke-spot=true`; tolerations
    (operator Exists, effect NoSchedule) for the GPU/TPU taints and the spot taint (kfp-kubernetes).

    vertex: CPU/memory limits and the Vertex accelerator enum + count (Vertex picks the machine). TPUs and spot
    are errors here: use `vertex_custom_job_component`.

    Args:
        task: The task (a single-component step, not a nested pipeline).
        profile: The validated profile.
        backend: `gke` or `vertex`.

    Returns:
        `task`, for chaining.

    Raises:
        ResourceProfileError: If `backend` is unknown or cannot give the profile.
    """
    validate_for_backend(profile, backend=backend)
    if backend == "gke":
        _apply_gke(task, profile)
    else:
        _apply_vertex(task, profile)
    return task


def _apply_gke(task: dsl.PipelineTask, profile: ResourceProfile) -> None:
    if profile.cpu is not None:
        task.set_cpu_request(profile.cpu).set_cpu_limit(profile.cpu)
    if profile.memory is not None:
        task.set_memory_request(profile.memory).set_memory_limit(profile.memory)
    if profile.gpu is not None:
        task.set_accelerator_type(GKE_GPU_RESOURCE).set_accelerator_limit(profile.gpu.count)
        kubernetes.add_node_selector(task, GKE_GPU_LABEL, profile.gpu.spec.gke_label)
        kubernetes.add_toleration(task, key=GKE_GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if profile.tpu is not None:
        host = profile.tpu.host
        assert host is not None and profile.tpu.spec.gke_label is not None  # validate_for_backend checked.
        task.set_accelerator_type(GKE_TPU_RESOURCE).set_accelerator_limit(host.chips)
        kubernetes.add_node_selector(task, GKE_TPU_LABEL, profile.tpu.spec.gke_label)
        kubernetes.add_node_selector(task, GKE_TPU_TOPOLOGY_LABEL, profile.tpu.topology)
        kubernetes.add_toleration(task, key=GKE_TPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if profile.spot:
        kubernetes.add_node_selector(task, GKE_SPOT_LABEL, "true")
        kubernetes.add_toleration(task, key=GKE_SPOT_LABEL, operator="Equal", value="true", effect="NoSchedule")


def _apply_vertex(task: dsl.PipelineTask, profile: ResourceProfile) -> None:
    if profile.cpu is not None:
        task.set_cpu_limit(profile.cpu)
    if profile.memory is not None:
        task.set_memory_limit(profile.memory)
    if profile.gpu is not None:
        task.set_accelerator_type(profile.gpu.spec.vertex_accelerator).set_accelerator_limit(profile.gpu.count)


# --------------------------------------------------------------------------------------------------------------
# Vertex custom-job route.
# --------------------------------------------------------------------------------------------------------------

_MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_CUSTOM_JOB_RESOURCE_KEYS = ("machine_type", "accelerator_type", "accelerator_count", "replica_count", "strategy")


def vertex_custom_job_spec(
    profile: ResourceProfile, *, replica_count: int = 1, machine_type: str | None = None
) -> dict[str, Any]:
    """Returns the Vertex CustomJob worker-pool settings for `profile`.

    The keys are those of GCPC's `create_custom_training_job_from_component` (`machine_type`,
    `accelerator_type`, `accelerator_count`, `replica_count`, `strategy`), plus `tpu_topology` for TPUs
    (a `machine_spec` field GCPC does not expose). Without `machine_type` the smallest machine in this module's
    tables that has the profile's GPUs/TPU, cpu and memory is chosen.

    Args:
        profile: The validated profile.
        replica_count: Machines in the job (>1: MultiWorkerMirroredStrategy; Vertex sets TF_CONFIG). GPUs/CPU
            only; a TPU slice is one machine here.
        machine_type: An explicit Compute Engine machine type; checked against the GPU/TPU it must carry.

    Returns:
        A dict with `machine_type`, `accelerator_type` (`""` for none), `accelerator_count`, `replica_count`,
        `strategy` (`SPOT` or `STANDARD`) and, for TPUs, `tpu_topology`.

    Raises:
        ResourceProfileError: If Vertex cannot give the profile on one machine per replica, naming the value
            and what is accepted.
    """
    validate_for_backend(profile, backend="vertex", custom_job=True)
    try:
        replicas = _parse_count("replica_count", replica_count)
        if machine_type is not None and not (isinstance(machine_type, str) and _MACHINE_TYPE_RE.match(machine_type)):
            raise ResourceProfileError(
                f"machine_type {machine_type!r} is malformed; accepted: a Compute Engine machine type such as "
                "n1-standard-8, g2-standard-12, a2-highgpu-1g, ct5lp-hightpu-4t"
            )
        spec: dict[str, Any] = {"accelerator_type": "", "accelerator_count": 0}
        if profile.tpu is not None:
            if replicas != 1:
                raise ResourceProfileError(
                    f"replica_count {replica_count!r} with a TPU would make a multi-slice job; accepted: 1"
                )
            host = profile.tpu.host
            assert host is not None  # validated above.
            if machine_type is not None and machine_type != host.machine_type:
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} does not hold tpu {profile.tpu.type}:{profile.tpu.topology}; "
                    f"accepted: {host.machine_type}"
                )
            spec.update(
                machine_type=host.machine_type,
                accelerator_type=profile.tpu.spec.vertex_accelerator,
                accelerator_count=host.vertex_accelerator_count,
                tpu_topology=profile.tpu.topology,
            )
        elif profile.gpu is not None:
            spec.update(
                machine_type=_gpu_machine(profile, machine_type).machine_type,
                accelerator_type=profile.gpu.spec.vertex_accelerator,
                accelerator_count=profile.gpu.count,
            )
        else:
            spec["machine_type"] = _cpu_machine(profile, machine_type)
        spec.update(replica_count=replicas, strategy="SPOT" if profile.spot else "STANDARD")
        return spec
    except ResourceProfileError as error:
        raise _for_step(profile.step, error) from None


def _needs(profile: ResourceProfile) -> tuple[float, float]:
    cores = cpu_cores(profile.cpu) if profile.cpu is not None else 0.0
    gigabytes = memory_bytes(profile.memory) / 10**9 if profile.memory is not None else 0.0
    return cores, gigabytes


def _fits(shape: MachineShape, profile: ResourceProfile) -> bool:
    cores, gigabytes = _needs(profile)
    return shape.vcpus >= cores and shape.memory_gb >= gigabytes


def _asked(profile: ResourceProfile) -> str:
    asked = [f"{key}={value}" for key, value in (("cpu", profile.cpu), ("memory", profile.memory)) if value]
    return ",".join(asked)


def _too_small(shape: MachineShape, profile: ResourceProfile) -> ResourceProfileError:
    return ResourceProfileError(
        f"machine_type {shape.machine_type!r} has {shape.vcpus} vCPUs and {shape.memory_gb:g} GB, less than "
        f"{_asked(profile)}; accepted: a machine type at least that large"
    )


def _gpu_machine(profile: ResourceProfile, machine_type: str | None) -> MachineShape:
    gpu = profile.gpu
    assert gpu is not None
    if gpu.type in _N1_MAX_VCPUS:
        cap = _N1_MAX_VCPUS[gpu.type][gpu.count]
        candidates = tuple(s for s in _N1_STANDARD if s.vcpus <= cap)
        if machine_type is not None:
            if not machine_type.startswith("n1-"):
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} cannot carry gpu {gpu.type}; accepted: an N1 machine type "
                    f"(n1-*) of at most {cap} vCPUs for {gpu.count} x {gpu.type}"
                )
            known = {s.machine_type: s for s in _N1_STANDARD}.get(machine_type)
            if known is not None and known.vcpus > cap:
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} has {known.vcpus} vCPUs, more than {gpu.count} x {gpu.type} "
                    f"allow; accepted: at most {cap} vCPUs"
                )
            if known is not None and not _fits(known, profile):
                raise _too_small(known, profile)
            return known or MachineShape(machine_type, 0, 0)
    else:
        candidates = tuple(s for s in _GPU_MACHINES[gpu.type] if s.gpus == gpu.count)
        if machine_type is not None:
            names = [s.machine_type for s in candidates]
            shape = next((s for s in candidates if s.machine_type == machine_type), None)
            if shape is None:
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} does not carry {gpu.count} x {gpu.type}; accepted: "
                    f"{', '.join(names)}"
                )
            if not _fits(shape, profile):
                raise _too_small(shape, profile)
            return shape
    for shape in sorted(candidates, key=lambda s: (s.vcpus, s.memory_gb)):
        if _fits(shape, profile):
            return shape
    largest = max(candidates, key=lambda s: (s.vcpus, s.memory_gb))
    other_n1 = (
        f", or an explicit n1-* machine_type of at most {_N1_MAX_VCPUS[gpu.type][gpu.count]} vCPUs"
        if gpu.type in _N1_MAX_VCPUS
        else ""
    )
    raise ResourceProfileError(
        f"{_asked(profile)} do not fit any machine with {gpu.count} x {gpu.type}; accepted: at most "
        f"{largest.vcpus} vCPUs and {largest.memory_gb:g} GB ({largest.machine_type}){other_n1}"
    )


def _accelerator_machine_types() -> set[str]:
    names = {s.machine_type for shapes in _GPU_MACHINES.values() for s in shapes}
    names.update(h.machine_type for t in TPU_TYPES.values() for h in t.single_host.values())
    return names


def _cpu_machine(profile: ResourceProfile, machine_type: str | None) -> str:
    if machine_type is not None:
        if machine_type in _accelerator_machine_types() or machine_type.startswith("ct"):
            raise ResourceProfileError(
                f"machine_type {machine_type!r} comes with accelerators, but the profile asks for none; "
                "accepted: add gpu=<type>:<count> or tpu=<type>:<topology>, or a CPU machine type"
            )
        known = {s.machine_type: s for s in _N1_STANDARD}.get(machine_type)
        if known is not None and not _fits(known, profile):
            raise _too_small(known, profile)
        return machine_type
    for shape in _N1_STANDARD:
        if _fits(shape, profile):
            return shape.machine_type
    largest = _N1_STANDARD[-1]
    raise ResourceProfileError(
        f"{_asked(profile)} do not fit the default n1-standard shapes; accepted: at "
        f"most {largest.vcpus} vCPUs and {largest.memory_gb:g} GB, or pass machine_type explicitly"
    )


def vertex_custom_job_component(
    component: Callable[..., Any],
    profile: ResourceProfile,
    *,
    replica_count: int = 1,
    machine_type: str | None = None,
    **custom_job_options: Any,
) -> Callable[..., Any]:
    """Wraps a KFP component as a Vertex AI CustomJob with `profile`'s resources (GCPC).

    Uses `google_cloud_pipeline_components.v1.custom_job.create_custom_training_job_from_component` with the
    settings of `vertex_custom_job_spec`; for TPUs the `tpu_topology` is written into the job's default
    `worker_pool_specs`, which GCPC does not expose as an argument. The returned component also takes
    `project` and `location` when called in a pipeline.

    Args:
        component: A KFP component (e.g. the train component).
        profile: The validated profile.
        replica_count: Machines in the job (see `vertex_custom_job_spec`).
        machine_type: An explicit machine type (see `vertex_custom_job_spec`).
        **custom_job_options: Other GCPC options (`service_account`, `base_output_directory`, `tensorboard`,
            `timeout`, `labels`, `network`, ...). The resource options come from the profile only.

    Returns:
        The CustomJob component.

    Raises:
        checks.MissingExtraError: If google-cloud-pipeline-components is not installed.
        ResourceProfileError: If Vertex cannot give the profile, or a resource option is passed directly.
    """
    clash = sorted(set(custom_job_options) & set(_CUSTOM_JOB_RESOURCE_KEYS + ("tpu_topology",)))
    if clash:
        raise ResourceProfileError(
            f"resource profile for step {profile.step!r}: custom_job_options {', '.join(clash)} would override "
            "the profile; accepted: set them through the profile, replica_count and machine_type"
        )
    spec = vertex_custom_job_spec(profile, replica_count=replica_count, machine_type=machine_type)
    create_custom_training_job_from_component = checks.import_extra(
        "google_cloud_pipeline_components.v1.custom_job", extra="vertex-custom-job",
        needed_for="The Vertex custom-job route (TPUs, spot, machine types, replicas)",
    ).create_custom_training_job_from_component
    topology = spec.pop("tpu_topology", None)
    if not spec["accelerator_type"]:
        spec.pop("accelerator_count")  # GCPC ignores the count without a type; keep its default.
    job = create_custom_training_job_from_component(component, **spec, **custom_job_options)
    if topology is not None:
        pools = job.component_spec.inputs["worker_pool_specs"].default
        for pool in pools:
            pool["machine_spec"]["tpu_topology"] = topology
    return job
