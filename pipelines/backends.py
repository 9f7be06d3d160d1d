"""A resource profile on a backend: whether it can give the profile to one task, and applying it to the task.

    apply_profile(task, profile, backend="gke")     # k8s resources + node selectors/tolerations (placement)
    apply_profile(task, profile, backend="vertex")  # Vertex accelerator enums via task setters (vertex)

What Vertex task setters cannot give (TPUs, spot, machine types, replicas) takes the custom-job route,
`tfpipe.pipelines.vertex.vertex_custom_job_component`.
"""

from __future__ import annotations

from kfp import dsl

from tfpipe.pipelines import placement, vertex
from tfpipe.pipelines.profiles import ResourceProfile, ResourceProfileError, step_error

BACKENDS = ("gke", "vertex")


def validate_for_backend(profile: ResourceProfile, *, backend: str, custom_job: bool = False) -> None:
    """Checks that `backend` can give `profile` to one task (one pod / one machine).

    Args:
        profile: The profile.
        backend: `gke` or `vertex`.
        custom_job: For `vertex`: check for the custom-job route instead of the task setters.

    Raises:
        ResourceProfileError: If the backend cannot give the profile, saying what it accepts and where to go.
    """
    if backend not in BACKENDS:
        raise ResourceProfileError(f"backend {backend!r} is unknown; accepted: {', '.join(BACKENDS)}")
    check = placement.validate_gke if backend == "gke" else (
        vertex.validate_custom_job if custom_job else vertex.validate_task)
    try:
        check(profile)
    except ResourceProfileError as error:
        raise step_error(profile.step, error) from None


def apply_profile(task: dsl.PipelineTask, profile: ResourceProfile, *, backend: str) -> dsl.PipelineTask:
    """Applies `profile` to a pipeline task for `backend`.

    gke: `placement.gke_placement` (CPU/memory requests = limits, GPU/TPU resources, node selectors and
    tolerations). vertex: CPU/memory limits and the Vertex accelerator enum + count (Vertex picks the machine);
    TPUs and spot are errors here: use `vertex.vertex_custom_job_component`.

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
        return placement.apply_to_task(task, placement.gke_placement(profile))
    return vertex.apply_to_task(task, profile)
