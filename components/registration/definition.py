"""The model-registration step: what Vertex AI Model Registry's upload is given for a gated export.

It runs after `export` in the pipeline's export stage when the pipeline is compiled
with `register_model` (`tfpipe compile --register-model NAME`); GCPC's
`ModelUploadOp` then uploads the artifact it writes (see
`tfpipe.pipelines.vertex.model_registration`). The work is in
`tfpipe.components.registration`, which first verifies the export against its commit marker.
"""

from typing import Dict, NamedTuple

from kfp import dsl
from kfp.dsl import Input, Model, Output


class UnmanagedContainerModel(dsl.Artifact):
    """GCPC's `google.UnmanagedContainerModel` artifact type (the same schema), so the step needs no GCPC at run time.

    Its URI is a model's directory; its metadata `containerSpec.imageUri` the container that serves it.
    """

    schema_title = "google.UnmanagedContainerModel"
    schema_version = "0.0.1"


def model_registration(
    model: Input[Model],
    serving_image: str,
    run_id: str,
    unmanaged_container_model: Output[UnmanagedContainerModel],
) -> NamedTuple("RegistrationInputs", [("labels", Dict[str, str]), ("description", str)]):
    """Prepares the upload of an exported SavedModel to Vertex AI Model Registry.

    Args:
        model: The export step's SavedModel (its metadata: step, checkpoint, metrics).
        serving_image: The prebuilt TensorFlow serving container image Vertex serves the model with.
        run_id: The pipeline job that exported it (a label).
        unmanaged_container_model: The model to upload: the SavedModel's URI and its serving container.

    Returns:
        The model's `labels` (the run, the step, each metric) and `description`.

    A refusal (the export is not what its commit marker says) ends the step with one line,
    `model-registration: refused: ...`, and status 1; nothing is uploaded.
    """
    from tfpipe.components.registration import runtime as registration

    return registration.run_for_kfp(model=model, serving_image=serving_image, run_id=run_id,
                                    unmanaged_container_model=unmanaged_container_model)
