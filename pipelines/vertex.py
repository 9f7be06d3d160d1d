"""Vertex AI: what pipeline task setters give a step, and the custom-job route for the rest.

Task setters (`apply_to_task`) ask for CPU and memory limits and a Vertex accelerator enum and count; Vertex
picks the machine. They cannot ask for TPUs, spot capacity, a machine type or several replicas: those take the
custom-job route, `vertex_custom_job_component`, which wraps a component with google-cloud-pipeline-components'
(GCPC) `create_custom_training_job_from_component` (optional extra: `pip install tfpipe[vertex-custom-job]`).

What the route relies on beyond GCPC's documented arguments is behind two small functions pinned to the GCPC
versions it was checked against (`GCPC_CHECKED_VERSIONS`, tested by `tests/test_vertex_custom_job.py`):
`set_tpu_topology` (GCPC has no `tpu_topology` argument) and `gcpc_job_interface` (the inputs and outputs GCPC's
job adds to a component, which no component input may share).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from kfp import dsl

from tfpipe import checks
from tfpipe.pipelines import machines
from tfpipe.pipelines.accelerators import TPU_TYPES
from tfpipe.pipelines.profiles import (
    ResourceProfile,
    ResourceProfileError,
    cpu_cores,
    memory_bytes,
    parse_count,
    step_error,
)

# Vertex AI Pipelines caps for task-level `set_cpu_limit` / `set_memory_limit` (Vertex docs, "Specify machine
# types for a pipeline step"): 96 vCPUs and 624 GB.
VERTEX_MAX_CPU = 96.0
VERTEX_MAX_MEMORY_BYTES = 624 * 10**9

CUSTOM_JOB_EXTRA = "pip install tfpipe[vertex-custom-job]"
# The GCPC releases (major.minor) whose internals `set_tpu_topology` and `gcpc_job_interface` were checked against.
GCPC_CHECKED_VERSIONS = ("2.22",)

_MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
# `create_custom_training_job_from_component` arguments that the profile sets (`strategy` is the scheduling
# strategy: SPOT or STANDARD).
_RESOURCE_OPTIONS = ("machine_type", "accelerator_type", "accelerator_count", "replica_count", "strategy")
# GCPC options whose default (None) removes the job input's default value: the launcher's payload would then hold
# a placeholder that nothing fills. Their empty values are the custom job's own defaults.
_EMPTY_OPTIONS = {"labels": {}, "reserved_ip_ranges": [], "psc_interface_config": {}}


# --------------------------------------------------------------------------------------------------------------
# Task setters.
# --------------------------------------------------------------------------------------------------------------


def validate_task(profile: ResourceProfile) -> None:
    """Checks that Vertex pipeline task setters can give `profile` (no TPU, no spot, within the caps).

    Raises:
        ResourceProfileError: Naming the value and the custom-job route (without the step prefix).
    """
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


def apply_to_task(task: dsl.PipelineTask, profile: ResourceProfile) -> dsl.PipelineTask:
    """Gives a task `profile` through Vertex task setters (call `validate_task` first).

    Returns:
        `task`, for chaining.
    """
    if profile.cpu is not None:
        task.set_cpu_limit(profile.cpu)
    if profile.memory is not None:
        task.set_memory_limit(profile.memory)
    if profile.gpu is not None:
        task.set_accelerator_type(profile.gpu.spec.vertex_accelerator).set_accelerator_limit(profile.gpu.count)
    return task


# --------------------------------------------------------------------------------------------------------------
# Custom-job route.
# --------------------------------------------------------------------------------------------------------------


def validate_custom_job(profile: ResourceProfile) -> None:
    """Checks that a Vertex custom job can give `profile` on one machine per replica.

    Raises:
        ResourceProfileError: For a TPU type Vertex lacks or a multi-host topology (without the step prefix).
    """
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


def vertex_custom_job_spec(
    profile: ResourceProfile, *, replica_count: int = 1, machine_type: str | None = None
) -> dict[str, Any]:
    """Returns the Vertex CustomJob worker-pool settings for `profile`.

    The keys are those of GCPC's `create_custom_training_job_from_component` (`machine_type`,
    `accelerator_type`, `accelerator_count`, `replica_count`, `strategy`), plus `tpu_topology` for TPUs
    (a `machine_spec` field GCPC does not expose). Without `machine_type` the smallest machine in
    `tfpipe.pipelines.accelerators` that has the profile's GPUs/TPU, cpu and memory is chosen.

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
    try:
        validate_custom_job(profile)
        replicas = parse_count("replica_count", replica_count)
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
                machine_type=machines.gpu_machine(profile, machine_type).machine_type,
                accelerator_type=profile.gpu.spec.vertex_accelerator,
                accelerator_count=profile.gpu.count,
            )
        else:
            spec["machine_type"] = machines.cpu_machine(profile, machine_type)
        spec.update(replica_count=replicas, strategy="SPOT" if profile.spot else "STANDARD")
        return spec
    except ResourceProfileError as error:
        raise step_error(profile.step, error) from None


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
    settings of `vertex_custom_job_spec`; for TPUs `set_tpu_topology` writes the topology into the job's worker
    pools. The returned component also takes `project` and `location` (default: the pipeline run's).

    Args:
        component: A KFP component (e.g. the train component). None of its inputs or outputs may share a name
            with the job's own (`gcpc_job_interface`): GCPC would let it replace the job's.
        profile: The validated profile.
        replica_count: Machines in the job (see `vertex_custom_job_spec`).
        machine_type: An explicit machine type (see `vertex_custom_job_spec`).
        **custom_job_options: Other GCPC options (`service_account`, `base_output_directory`, `tensorboard`,
            `timeout`, `labels`, `network`, `restart_job_on_worker_restart`, ...). The resource options come
            from the profile only.

    Returns:
        The CustomJob component.

    Raises:
        checks.MissingExtraError: If google-cloud-pipeline-components is not installed.
        ResourceProfileError: If Vertex cannot give the profile, or a resource option is passed directly.
        checks.InputError: If an input or output of `component` has the name of one of the job's.
    """
    clash = sorted(set(custom_job_options) & set(_RESOURCE_OPTIONS + ("tpu_topology",)))
    if clash:
        raise ResourceProfileError(
            f"resource profile for step {profile.step!r}: custom_job_options {', '.join(clash)} would override "
            "the profile; accepted: set them through the profile, replica_count and machine_type"
        )
    spec = vertex_custom_job_spec(profile, replica_count=replica_count, machine_type=machine_type)
    create_job = _gcpc().create_custom_training_job_from_component
    check_no_gcpc_collision(component)
    topology = spec.pop("tpu_topology", None)
    if not spec["accelerator_type"]:
        spec.pop("accelerator_count")  # GCPC ignores the count without a type; keep its default.
    job = create_job(component, **spec, **{**_EMPTY_OPTIONS, **custom_job_options})
    if topology is not None:
        set_tpu_topology(job, topology)
    return job


def _gcpc() -> Any:
    return checks.import_extra(
        "google_cloud_pipeline_components.v1.custom_job", extra="vertex-custom-job",
        needed_for="The Vertex custom-job route (TPUs, spot, machine types, replicas)",
    )


def check_no_gcpc_collision(component: Any) -> None:
    """Refuses a component that has an input or output named as one of GCPC's custom job.

    Raises:
        checks.InputError: Naming the component, the clashing names and the names the job takes.
    """
    interface = gcpc_job_interface()
    spec = component.component_spec
    clash = sorted((set(spec.inputs or {}) | set(spec.outputs or {})) & interface)
    if clash:
        raise checks.InputError(
            f"component {spec.name!r} has input(s)/output(s) {clash} that GCPC's custom job also has; the job's "
            f"would be replaced. Accepted: names other than {sorted(interface)}"
        )


@functools.lru_cache(maxsize=1)
def gcpc_job_interface() -> frozenset[str]:
    """The input and output names GCPC's custom job adds to a component it wraps (GCPC internal, see module doc).

    Read from the installed GCPC: the job made from a component with no inputs or outputs has only its own.
    """

    @dsl.container_component
    def no_interface():
        return dsl.ContainerSpec(image="tfpipe-probe")

    job = _gcpc().create_custom_training_job_from_component(no_interface)
    return frozenset(job.component_spec.inputs or {}) | frozenset(job.component_spec.outputs or {})


def set_tpu_topology(job: Any, topology: str) -> None:
    """Writes `machine_spec.tpu_topology` into every worker pool of a GCPC custom-job component (GCPC internal).

    GCPC puts the worker pools it builds into the default of the job's `worker_pool_specs` input and has no
    argument for the topology; a TPU VM slice needs it.
    """
    for pool in job.component_spec.inputs["worker_pool_specs"].default:
        pool["machine_spec"]["tpu_topology"] = topology


# --------------------------------------------------------------------------------------------------------------
# Vertex AI TensorBoard and Model Registry.
# --------------------------------------------------------------------------------------------------------------

# Run-level placeholders Vertex fills in (GCPC's `_placeholders`): the run's service account and region.
SERVICE_ACCOUNT_PLACEHOLDER = "{{$.pipeline_service_account}}"
LOCATION_PLACEHOLDER = "{{$.pipeline_google_cloud_location}}"
# A prebuilt TensorFlow serving container for registered models (google-cloud-aiplatform's list of prebuilt
# prediction containers; choose one whose TensorFlow runs the model's ops, e.g. a GPU one, with --serving-image).
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
MAX_MODEL_NAME = 128

_TENSORBOARD_RE = re.compile(r"projects/[a-z0-9-]+/locations/([a-z0-9-]+)/tensorboards/[0-9]+")
_MODEL_RE = re.compile(r"projects/[a-z0-9-]+/locations/([a-z0-9-]+)/models/[A-Za-z0-9_-]+")
_NOT_IN_MODEL_NAME = re.compile(r'["\\\x00-\x1f]')


def _check_resource_name(name: str, value: Any, pattern: re.Pattern, example: str, note: str = "") -> str | None:
    if value == "":
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise checks.InputError(f"`{name}` must be a Vertex AI {example}{note}, got {checks.shown(value)}")
    return value


def check_tensorboard(name: str, value: Any) -> str | None:
    """Checks a Vertex AI TensorBoard resource name, `projects/P/locations/L/tensorboards/ID` ("" for none)."""
    return _check_resource_name(name, value, _TENSORBOARD_RE, "TensorBoard resource name such as "
                                "'projects/my-project/locations/us-central1/tensorboards/123'")


def check_model_name(name: str, value: Any) -> str | None:
    """Checks the display name of a registered model: 1 to 128 characters, no quote, backslash or control character
    (GCPC's ModelUploadOp pastes it into a JSON string); "" for none."""
    if value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_MODEL_NAME or _NOT_IN_MODEL_NAME.search(value):
        raise checks.InputError(
            f"`{name}` must be a model display name of 1 to {MAX_MODEL_NAME} characters without '\"', '\\' or "
            f"control characters, got {checks.shown(value)}"
        )
    return value


def check_parent_model(name: str, value: Any) -> str | None:
    """Checks a Vertex AI model resource name, `projects/P/locations/L/models/ID` ("" for none)."""
    return _check_resource_name(name, value, _MODEL_RE, "model resource name such as "
                                "'projects/my-project/locations/us-central1/models/1234'",
                                " (a new version is registered under it)")


def tensorboard_options(tensorboard: str) -> dict[str, str]:
    """The GCPC custom-job options that upload a job's `AIP_TENSORBOARD_LOG_DIR` to `tensorboard`.

    Vertex runs the upload as the job's service account: the pipeline run's (`tfpipe submit --service-account`),
    which needs write access to the TensorBoard (roles/aiplatform.user). The job's `base_output_directory` is
    given per run (`tfpipe.components.model_dir.definition.resolve_run_dirs`).
    """
    return {"tensorboard": tensorboard, "service_account": SERVICE_ACCOUNT_PLACEHOLDER}


def model_registration(
    *, display_name: str, image: str, serving_image: str = DEFAULT_SERVING_IMAGE, parent_model: str | None = None,
) -> Callable[[Any], Any]:
    """Returns `register(exported)`: registers an export task's SavedModel in Vertex AI Model Registry.

    Called inside the export stage (after the gate), `register` adds a `model-registration` step (the tfpipe image:
    the export's URI and `serving_image` as GCPC's `UnmanagedContainerModel`, labels and a description from the
    export's step and metrics) and GCPC's `ModelUploadOp`, in the run's region, or as a new version of
    `parent_model` (imported as GCPC's `VertexModel`) in its region.

    Args:
        display_name: The registered model's display name (checked with `check_model_name`).
        image: The tfpipe image (runs the model-registration step).
        serving_image: The prebuilt TensorFlow serving container image.
        parent_model: A model resource name to add a version to, or None for a new model.

    Raises:
        checks.MissingExtraError: If google-cloud-pipeline-components is not installed.
    """
    from tfpipe.components.registration import definition as registration_definition

    model_ops = checks.import_extra("google_cloud_pipeline_components.v1.model", extra="vertex-custom-job",
                                    needed_for="Registering models in Vertex AI Model Registry")
    artifact_types = checks.import_extra("google_cloud_pipeline_components.types.artifact_types",
                                         extra="vertex-custom-job", needed_for="Registering models")
    prepare_op = dsl.component(registration_definition.model_registration, base_image=image,
                               install_kfp_package=False)
    location = _MODEL_RE.fullmatch(parent_model)[1] if parent_model else LOCATION_PLACEHOLDER

    def register(exported: Any) -> Any:
        prepared = prepare_op(model=exported.outputs["model"], serving_image=serving_image,
                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        prepared.set_display_name("model-registration").set_caching_options(False)
        parent = {}
        if parent_model:
            imported = dsl.importer(
                artifact_uri=f"https://{location}-aiplatform.googleapis.com/v1/{parent_model}",
                artifact_class=artifact_types.VertexModel, metadata={"resourceName": parent_model}, reimport=False)
            imported.set_display_name("parent-model")
            parent["parent_model"] = imported.output
        upload = model_ops.ModelUploadOp(
            display_name=display_name, location=location, description=prepared.outputs["description"],
            labels=prepared.outputs["labels"], unmanaged_container_model=prepared.outputs["unmanaged_container_model"],
            **parent)
        upload.set_display_name("model-upload").set_caching_options(False)
        return upload

    return register
