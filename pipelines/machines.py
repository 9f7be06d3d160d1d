"""Which Compute Engine machine a Vertex custom job asks for: the smallest in `accelerators` that fits a profile.

A GPU profile on N1 GPUs (T4, P4, P100, V100) gets an `n1-standard-*` machine within the vCPU cap for its GPU
count; other GPUs come with fixed machine shapes (`g2-standard-*` for L4, `a2-*` for A100, ...), whose GPU count
must match; a CPU-only profile gets an `n1-standard-*`. An explicit `machine_type` is checked against the same
tables. Errors echo the machine and the profile and say what is accepted (without the step prefix).
"""

from __future__ import annotations

from tfpipe.pipelines.accelerators import GPU_MACHINES, N1_MAX_VCPUS, N1_STANDARD, TPU_TYPES, MachineShape
from tfpipe.pipelines.profiles import ResourceProfile, ResourceProfileError, cpu_cores, memory_bytes


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


def gpu_machine(profile: ResourceProfile, machine_type: str | None) -> MachineShape:
    """The machine for a GPU profile: `machine_type` checked, or the smallest that fits.

    Raises:
        ResourceProfileError: If `machine_type` cannot carry the GPUs or is too small, or nothing fits.
    """
    gpu = profile.gpu
    assert gpu is not None
    if gpu.type in N1_MAX_VCPUS:
        cap = N1_MAX_VCPUS[gpu.type][gpu.count]
        candidates = tuple(s for s in N1_STANDARD if s.vcpus <= cap)
        if machine_type is not None:
            if not machine_type.startswith("n1-"):
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} cannot carry gpu {gpu.type}; accepted: an N1 machine type "
                    f"(n1-*) of at most {cap} vCPUs for {gpu.count} x {gpu.type}"
                )
            known = {s.machine_type: s for s in N1_STANDARD}.get(machine_type)
            if known is not None and known.vcpus > cap:
                raise ResourceProfileError(
                    f"machine_type {machine_type!r} has {known.vcpus} vCPUs, more than {gpu.count} x {gpu.type} "
                    f"allow; accepted: at most {cap} vCPUs"
                )
            if known is not None and not _fits(known, profile):
                raise _too_small(known, profile)
            return known or MachineShape(machine_type, 0, 0)
    else:
        candidates = tuple(s for s in GPU_MACHINES[gpu.type] if s.gpus == gpu.count)
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
        f", or an explicit n1-* machine_type of at most {N1_MAX_VCPUS[gpu.type][gpu.count]} vCPUs"
        if gpu.type in N1_MAX_VCPUS
        else ""
    )
    raise ResourceProfileError(
        f"{_asked(profile)} do not fit any machine with {gpu.count} x {gpu.type}; accepted: at most "
        f"{largest.vcpus} vCPUs and {largest.memory_gb:g} GB ({largest.machine_type}){other_n1}"
    )


def _accelerator_machine_types() -> set[str]:
    names = {s.machine_type for shapes in GPU_MACHINES.values() for s in shapes}
    names.update(h.machine_type for t in TPU_TYPES.values() for h in t.single_host.values())
    return names


def cpu_machine(profile: ResourceProfile, machine_type: str | None) -> str:
    """The machine type for a profile without accelerators: `machine_type` checked, or the smallest n1-standard.

    Raises:
        ResourceProfileError: If `machine_type` comes with accelerators or is too small, or nothing fits.
    """
    if machine_type is not None:
        if machine_type in _accelerator_machine_types() or machine_type.startswith("ct"):
            raise ResourceProfileError(
                f"machine_type {machine_type!r} comes with accelerators, but the profile asks for none; "
                "accepted: add gpu=<type>:<count> or tpu=<type>:<topology>, or a CPU machine type"
            )
        known = {s.machine_type: s for s in N1_STANDARD}.get(machine_type)
        if known is not None and not _fits(known, profile):
            raise _too_small(known, profile)
        return machine_type
    for shape in N1_STANDARD:
        if _fits(shape, profile):
            return shape.machine_type
    largest = N1_STANDARD[-1]
    raise ResourceProfileError(
        f"{_asked(profile)} do not fit the default n1-standard shapes; accepted: at "
        f"most {largest.vcpus} vCPUs and {largest.memory_gb:g} GB, or pass machine_type explicitly"
    )
