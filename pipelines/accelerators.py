"""What GPUs, TPUs and machine types exist, as GKE and Vertex AI name them: fact tables, no logic.

Sources: Google Cloud docs "GPU machine types" (Compute Engine), "About GPUs in GKE" / "Plan TPUs in GKE",
Vertex AI "Configure compute resources for custom training" and "Training with TPU VMs"; the AcceleratorType
enum of google-cloud-aiplatform (`aiplatform_v1.types.AcceleratorType`), which has no TPU v5p or v6e member.
Cloud offerings change: regional availability, quota and spot/flex-start-only shapes are NOT modelled. Less
certain entries are marked "(uncertain)". Update these tables, not the code, when offerings change
(`tests/test_resources.py` checks the Vertex enum names against the installed aiplatform).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


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
        # N1 + GPU (any N1 shape up to a vCPU cap per GPU count, see N1_MAX_VCPUS).
        GpuType("t4", "nvidia-tesla-t4", "NVIDIA_TESLA_T4", (1, 2, 4), ("tesla-t4",)),
        GpuType("p4", "nvidia-tesla-p4", "NVIDIA_TESLA_P4", (1, 2, 4), ("tesla-p4",)),
        GpuType("p100", "nvidia-tesla-p100", "NVIDIA_TESLA_P100", (1, 2, 4), ("tesla-p100",)),
        GpuType("v100", "nvidia-tesla-v100", "NVIDIA_TESLA_V100", (1, 2, 4, 8), ("tesla-v100",)),
        # Fixed GPU machine shapes (see GPU_MACHINES).
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
N1_STANDARD = tuple(MachineShape(f"n1-standard-{n}", n, 3.75 * n) for n in (4, 8, 16, 32, 64, 96))
# Largest N1 shape (vCPUs) that takes N GPUs of a type (Compute Engine "GPU machine types", N1 section).
N1_MAX_VCPUS: Mapping[str, Mapping[int, int]] = {
    "t4": {1: 48, 2: 48, 4: 96},
    "p4": {1: 24, 2: 48, 4: 96},
    "p100": {1: 16, 2: 32, 4: 64},  # 4 x P100 up to 96 vCPUs in some zones (uncertain): 64 is safe.
    "v100": {1: 12, 2: 24, 4: 48, 8: 96},
}


def _shapes(family: str, rows: tuple[tuple[str, int, float, int], ...]) -> tuple[MachineShape, ...]:
    return tuple(MachineShape(f"{family}-{suffix}", cpus, mem, gpus) for suffix, cpus, mem, gpus in rows)


# Machine types whose GPU count is fixed by the shape (suffix, vCPUs, memory GB, GPUs).
GPU_MACHINES: Mapping[str, tuple[MachineShape, ...]] = {
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
