"""The GCPC stand-in of `kfp_fake_gcpc`, extended to wrap a component as GCPC 2.22 does, so that whole pipelines
with a custom-job step compile in tests.

GCPC's `create_custom_training_job_from_component` returns a component whose interface is the custom job's own
inputs (`project` and `location` defaulting to the pipeline's project and location placeholders,
`worker_pool_specs`, ...) merged with the wrapped component's inputs and outputs; the call in a pipeline then
takes the wrapped component's arguments. `kfp_fake_gcpc` keeps only the job's inputs; this fake performs the
same merge on the IR as GCPC's `custom_job/utils.py` does and reloads it with `load_component_from_text`.
"""

import copy
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp import components

from tests.support import kfp_fake_gcpc

# GCPC's `_placeholders.PROJECT_ID_PLACEHOLDER` and `LOCATION_PLACEHOLDER`.
PROJECT_ID_PLACEHOLDER = "{{$.pipeline_google_cloud_project_id}}"
LOCATION_PLACEHOLDER = "{{$.pipeline_google_cloud_location}}"


class MergingFakeGcpc(kfp_fake_gcpc.FakeGcpc):
    """Records calls like `FakeGcpc` and returns the wrapped component's interface merged into the job's."""

    def create_custom_training_job_from_component(self, component_spec: Any, **kwargs: Any) -> Any:
        job = super().create_custom_training_job_from_component(component_spec, **kwargs)
        job_ir = json_format.MessageToDict(job.pipeline_spec)
        user_ir = json_format.MessageToDict(component_spec.pipeline_spec)
        (job_component,) = job_ir["components"].values()
        (user_component,) = user_ir["components"].values()

        parameters = job_component["inputDefinitions"]["parameters"]
        parameters["project"].update(defaultValue=PROJECT_ID_PLACEHOLDER, isOptional=True)
        parameters["location"].update(defaultValue=LOCATION_PLACEHOLDER, isOptional=True)
        parameters.update(user_component.get("inputDefinitions", {}).get("parameters", {}))
        outputs = job_component.setdefault("outputDefinitions", {})
        outputs.setdefault("parameters", {}).update(user_component.get("outputDefinitions", {}).get("parameters", {}))
        job_component["inputDefinitions"]["artifacts"] = user_component.get("inputDefinitions", {}).get("artifacts", {})
        outputs["artifacts"] = user_component.get("outputDefinitions", {}).get("artifacts", {})
        job_ir["root"]["inputDefinitions"] = copy.deepcopy(job_component["inputDefinitions"])
        job_ir["root"]["outputDefinitions"] = copy.deepcopy(outputs)
        (job_task,) = job_ir["root"]["dag"]["tasks"].values()
        (user_task,) = user_ir["root"]["dag"]["tasks"].values()
        job_task.setdefault("inputs", {}).update(user_task.get("inputs", {}))

        merged = components.load_component_from_text(yaml.safe_dump(job_ir))
        merged.component_spec.name = component_spec.component_spec.name
        return merged


def install(monkeypatch: pytest.MonkeyPatch) -> MergingFakeGcpc:
    """Makes `google_cloud_pipeline_components.v1.custom_job` importable as this fake, for one test."""
    return kfp_fake_gcpc.install(monkeypatch, MergingFakeGcpc())
