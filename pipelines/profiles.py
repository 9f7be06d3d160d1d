"""Per-step resource profiles: what one pipeline step asks of the machine it runs on.

A profile is written once per step, as text or a mapping::

    parse_profile("cpu=8,memory=32G,gpu=l4:1,spot", step="train")
    parse_profile({"cpu": 4, "memory": "16Gi", "tpu": "v5e:2x2"}, step="train")

Parsing checks the profile on its own (known keys, GPU/TPU types and counts from `accelerators`, cpu and memory
quantities); what a backend can give is checked by `backends.validate_for_backend`. Every error names the step,
echoes the bad value and says what is accepted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from kubernetes.utils import parse_quantity

from tfpipe import checks
from tfpipe.pipelines.accelerators import GPU_TYPES, TPU_TYPES, GpuType, TpuHost, TpuType

PROFILE_KEYS = ("cpu", "memory", "gpu", "tpu", "spot")


class ResourceProfileError(checks.InputError):
    """A resource profile that is malformed, or that a backend cannot give (a bad input: one line, exit 2)."""


def step_error(step: str, error: ResourceProfileError) -> ResourceProfileError:
    """`error` with the step it is about in front: `resource profile for step 'train': ...`."""
    return ResourceProfileError(f"resource profile for step {step!r}: {error}")


def parse_count(what: str, value: Any) -> int:
    """A positive integer, or a digit string of one; `what` names it in the error.

    Raises:
        ResourceProfileError: Echoing the value.
    """
    if isinstance(value, bool):
        raise ResourceProfileError(f"{what} {value!r} is not a whole number; accepted: a positive integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise ResourceProfileError(f"{what} {value!r} is not a positive integer; accepted: a positive integer")
    return value


# --------------------------------------------------------------------------------------------------------------
# Quantities. The value is Kubernetes' (`kubernetes.utils.parse_quantity`); the forms are those that both
# Kubernetes and KFP's task setters (`set_cpu_limit`, `set_memory_limit`) accept, so a profile works on every
# route: no exponents or signs, and memory in whole units.
# --------------------------------------------------------------------------------------------------------------

MEMORY_UNITS = ("K", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
MAX_CPU_CORES = 1024


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def cpu_cores(cpu: str) -> float:
    """Returns the cores a Kubernetes CPU quantity means (`"8"` -> 8.0, `"500m"` -> 0.5).

    Args:
        cpu: A CPU quantity: a decimal number of cores, or millicores ending in `m`.

    Raises:
        ResourceProfileError: If `cpu` is malformed.
    """
    number = cpu.removesuffix("m") if isinstance(cpu, str) else None
    if number is None or not _is_digits(number.replace(".", "", 1)):
        raise ResourceProfileError(
            f"cpu {cpu!r} is malformed; accepted: a number of cores ('8', '0.5') or millicores ('500m')"
        )
    return float(parse_quantity(cpu))


def memory_bytes(memory: str) -> int:
    """Returns the bytes a Kubernetes memory quantity means (`"32G"` -> 32e9, `"16Gi"` -> 16 * 2**30).

    Args:
        memory: An integer with an optional unit: K, M, G, T, P, E (powers of 1000) or Ki ... Ei (of 1024).

    Raises:
        ResourceProfileError: If `memory` is malformed.
    """
    if isinstance(memory, str):
        unit = max((u for u in MEMORY_UNITS if memory.endswith(u)), key=len, default="")
        number = memory[: len(memory) - len(unit)]
    if not isinstance(memory, str) or not _is_digits(number):
        raise ResourceProfileError(
            f"memory {memory!r} is malformed; accepted: an integer with an optional unit "
            f"{', '.join(MEMORY_UNITS[:6])} or {', '.join(MEMORY_UNITS[6:])} (e.g. '32G', '16Gi')"
        )
    return int(parse_quantity(memory))


# --------------------------------------------------------------------------------------------------------------
# Profiles.
# --------------------------------------------------------------------------------------------------------------


def _alias_index(table: Mapping[str, Any], *extra_fields: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, entry in table.items():
        for spelling in [name, *entry.aliases] + [getattr(entry, f) for f in extra_fields]:
            if spelling:
                index[spelling.lower().replace("_", "-")] = name
    return index


_GPU_ALIASES = _alias_index(GPU_TYPES, "gke_label", "vertex_accelerator")
_TPU_ALIASES = _alias_index(TPU_TYPES)


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
            raise step_error(self.step, error) from None

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


def _normalize_cpu(cpu: Any) -> str | None:
    if cpu is None:
        return None
    if isinstance(cpu, bool) or not isinstance(cpu, (str, int, float)):
        raise ResourceProfileError(f"cpu {cpu!r} is malformed; accepted: '8', '0.5', '500m' or a number")
    text = str(cpu).strip()
    if not 0 < cpu_cores(text) <= MAX_CPU_CORES:
        raise ResourceProfileError(
            f"cpu {cpu!r} is out of range; accepted: more than 0 and at most {MAX_CPU_CORES} cores (the largest "
            "machines have 416 vCPUs)")
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
    number = parse_count(f"gpu count for {name}", count)
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
    if not _is_topology(topology) or len(topology.split("x")) != spec.dimensions:
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
    if chips is not None and parse_count("tpu chips", chips) != request.chips:
        raise ResourceProfileError(
            f"tpu chips {chips!r} do not match topology {topology} of {name}, which has {request.chips} chips; "
            f"accepted: {request.chips} (or leave chips out)"
        )
    return request


def _is_topology(text: str) -> bool:
    dims = text.split("x")
    return 2 <= len(dims) <= 3 and all(_is_digits(d) and d[0] != "0" for d in dims)


def _split_pair(key: str, text: str, form: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts):
        raise ResourceProfileError(f"{key} {text!r} is malformed; accepted: {form}")
    return parts[0], parts[1]


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
            raise step_error(step, error) from None
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
