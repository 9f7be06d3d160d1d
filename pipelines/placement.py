"""Where a step runs on GKE: the one translation of a resource profile into Kubernetes terms.

`gke_placement(profile)` gives the container resources, node selectors and tolerations for a profile; both GKE
routes use it:

* a KFP task (`apply_to_task`): KFP's resource setters and kfp-kubernetes' node selectors and tolerations;
* the replica pods of a multi-worker `TFJob` (`tfjob_placement`): the same placement as pod-spec JSON, computed
  when the pipeline is compiled and passed to the launcher step (`tfpipe.components.train.tfjob`), which builds
  the pods from it at run time.

CPU and memory are requests = limits; GPUs are `nvidia.com/gpu` with a `cloud.google.com/gke-accelerator` node
selector; TPUs are `google.com/tpu` (the chips on the one host) with `cloud.google.com/gke-tpu-accelerator` and
`cloud.google.com/gke-tpu-topology` selectors; spot is `cloud.google.com/gke-spot=true`; each comes with the
toleration of GKE's taint for it (effect NoSchedule).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from kfp import dsl, kubernetes

from tfpipe.pipelines.accelerators import TPU_TYPES
from tfpipe.pipelines.profiles import ResourceProfile, ResourceProfileError, step_error

GKE_GPU_RESOURCE = "nvidia.com/gpu"
GKE_TPU_RESOURCE = "google.com/tpu"
GKE_GPU_LABEL = "cloud.google.com/gke-accelerator"
GKE_TPU_LABEL = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
GKE_SPOT_LABEL = "cloud.google.com/gke-spot"


def validate_gke(profile: ResourceProfile) -> None:
    """Checks that one GKE pod can have `profile` (a TPU type GKE offers, on one host).

    Raises:
        ResourceProfileError: Saying what GKE accepts and where to go instead (without the step prefix).
    """
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


@dataclasses.dataclass(frozen=True)
class GkePlacement:
    """A profile in Kubernetes terms, for one container and its pod.

    Attributes:
        cpu: CPU request and limit, or None.
        memory: Memory request and limit, or None.
        accelerator: `(resource name, count)` (`("nvidia.com/gpu", 2)`), or None.
        node_selector: Node labels the pod must land on.
        tolerations: Tolerations (Kubernetes JSON: key, operator, value, effect) of the nodes' taints.
    """

    cpu: str | None = None
    memory: str | None = None
    accelerator: tuple[str, int] | None = None
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()

    def pod_json(self) -> dict[str, Any]:
        """The placement as pod-spec JSON: `{"resources": ..., "nodeSelector": ..., "tolerations": ...}`.

        `resources` is a container's `ResourceRequirements` (requests = limits for cpu and memory, the accelerator
        as a limit); keys without content are left out.
        """
        amounts = {key: value for key, value in (("cpu", self.cpu), ("memory", self.memory)) if value is not None}
        limits = dict(amounts)
        if self.accelerator is not None:
            limits[self.accelerator[0]] = str(self.accelerator[1])
        fields: dict[str, Any] = {}
        if limits:
            fields["resources"] = {"requests": amounts, "limits": limits}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [dict(t) for t in self.tolerations]
        return fields

    def to_json(self) -> str:
        """`pod_json()` as text, the form the TFJob launcher step takes."""
        return json.dumps(self.pod_json(), sort_keys=True)


def _exists(key: str) -> dict[str, str]:
    return {"key": key, "operator": "Exists", "effect": "NoSchedule"}


def gke_placement(profile: ResourceProfile) -> GkePlacement:
    """Returns the GKE placement of `profile` for one pod.

    Raises:
        ResourceProfileError: If GKE cannot give the profile to one pod, naming the step.
    """
    try:
        validate_gke(profile)
    except ResourceProfileError as error:
        raise step_error(profile.step, error) from None
    accelerator = None
    selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    if profile.gpu is not None:
        accelerator = (GKE_GPU_RESOURCE, profile.gpu.count)
        selector[GKE_GPU_LABEL] = profile.gpu.spec.gke_label
        tolerations.append(_exists(GKE_GPU_RESOURCE))
    if profile.tpu is not None:
        host, label = profile.tpu.host, profile.tpu.spec.gke_label
        assert host is not None and label is not None  # validate_gke checked.
        accelerator = (GKE_TPU_RESOURCE, host.chips)
        selector.update({GKE_TPU_LABEL: label, GKE_TPU_TOPOLOGY_LABEL: profile.tpu.topology})
        tolerations.append(_exists(GKE_TPU_RESOURCE))
    if profile.spot:
        selector[GKE_SPOT_LABEL] = "true"
        tolerations.append({"key": GKE_SPOT_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"})
    return GkePlacement(profile.cpu, profile.memory, accelerator, selector, tuple(tolerations))


def tfjob_placement(profile: ResourceProfile) -> GkePlacement:
    """Returns the placement of each replica pod of a multi-worker TFJob.

    Raises:
        ResourceProfileError: For a TPU (TPUStrategy does not span TFJob replicas) or a profile GKE cannot give.
    """
    if profile.tpu is not None:
        raise ResourceProfileError(
            f"resource profile for step {profile.step!r}: tpu={profile.tpu.type}:{profile.tpu.topology} cannot "
            "run as TFJob replicas (TPUStrategy does not span them); accepted: cpu, memory, gpu, spot"
        )
    return gke_placement(profile)


def apply_to_task(task: dsl.PipelineTask, placement: GkePlacement) -> dsl.PipelineTask:
    """Gives a KFP task `placement`: KFP resource setters, kfp-kubernetes node selectors and tolerations.

    Returns:
        `task`, for chaining.
    """
    if placement.cpu is not None:
        task.set_cpu_request(placement.cpu).set_cpu_limit(placement.cpu)
    if placement.memory is not None:
        task.set_memory_request(placement.memory).set_memory_limit(placement.memory)
    if placement.accelerator is not None:
        task.set_accelerator_type(placement.accelerator[0]).set_accelerator_limit(placement.accelerator[1])
    for label, value in placement.node_selector.items():
        kubernetes.add_node_selector(task, label, value)
    for toleration in placement.tolerations:
        kubernetes.add_toleration(task, **toleration)
    return task
