"""A stand-in for google-cloud-pipeline-components' custom-job wrapper, for tests without that package.

The real package (an optional extra) pins google-cloud-aiplatform<2 and is not installed in the test
environment. This fake mirrors the part tfpipe relies on: `create_custom_training_job_from_component` takes the
resource keyword arguments and returns a KFP component whose `worker_pool_specs` input defaults to the worker
pools GCPC 2.22 builds from them (a first pool of one machine, a second for `replica_count - 1` more).
"""

import sys
import types
from typing import Any, Optional

import pytest
from kfp import dsl


class FakeGcpc:
    """Records the calls made to the fake `create_custom_training_job_from_component`."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_custom_training_job_from_component(
        self,
        component_spec: Any,
        *,
        replica_count: int = 1,
        machine_type: str = "n1-standard-4",
        accelerator_type: str = "",
        accelerator_count: int = 1,
        strategy: str = "STANDARD",
        **options: Any,
    ) -> Any:
        """Builds the worker pools as GCPC does and returns a container component that carries them."""
        self.calls.append(
            dict(
                component=component_spec,
                replica_count=replica_count,
                machine_type=machine_type,
                accelerator_type=accelerator_type,
                accelerator_count=accelerator_count,
                strategy=strategy,
                **options,
            )
        )
        machine_spec: dict[str, Any] = {"machine_type": machine_type}
        if accelerator_type:
            machine_spec.update(accelerator_type=accelerator_type, accelerator_count=accelerator_count)
        pool = {"machine_spec": machine_spec, "replica_count": 1, "container_spec": {"image_uri": "python:3.11"}}
        pools = [pool]
        if replica_count > 1:
            pools.append({**pool, "machine_spec": dict(machine_spec), "replica_count": replica_count - 1})

        @dsl.container_component
        def custom_training_job(
            project: str, location: str, worker_pool_specs: list = None, strategy: str = "STANDARD"
        ):
            return dsl.ContainerSpec(image="gcr.io/fake/gcpc", command=["launch"], args=[project, location])

        custom_training_job.component_spec.inputs["worker_pool_specs"].default = pools
        custom_training_job.component_spec.inputs["strategy"].default = strategy
        return custom_training_job


def install(monkeypatch: pytest.MonkeyPatch, fake: Optional[Any] = None) -> Any:
    """Makes `google_cloud_pipeline_components.v1.custom_job` importable as a fake (default `FakeGcpc`), for one test."""
    fake = fake if fake is not None else FakeGcpc()
    root = types.ModuleType("google_cloud_pipeline_components")
    v1 = types.ModuleType("google_cloud_pipeline_components.v1")
    custom_job = types.ModuleType("google_cloud_pipeline_components.v1.custom_job")
    custom_job.create_custom_training_job_from_component = fake.create_custom_training_job_from_component
    root.v1 = v1
    v1.custom_job = custom_job
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components", root)
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components.v1", v1)
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components.v1.custom_job", custom_job)
    return fake
