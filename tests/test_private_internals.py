"""The private internals of other packages tfpipe reads, each behind one small function, pinned to the installed
versions: an upgrade that changes one fails here, naming it, instead of somewhere downstream.

(TensorFlow's are pinned in tests/test_tf_internals.py, GCPC's in tests/test_vertex_custom_job.py.)
"""

import importlib.metadata
import json

from kfp import dsl, local

from tfpipe.pipelines import local_run, submit


def _checked(package: str, versions) -> None:
    installed = importlib.metadata.version(package)
    assert installed.startswith(versions), (
        f"{package} {installed} is not a version tfpipe's use of its internals was checked with ({versions}): "
        "check the function that reads them, then add the version."
    )


def test_aiplatform_pipeline_job_resource(tmp_path):
    _checked("google-cloud-aiplatform", submit.AIPLATFORM_CHECKED_VERSIONS)
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from kfp import compiler

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def noop():
        pass

    @dsl.pipeline(name="internals")
    def pipeline():
        noop()

    compiler.Compiler().compile(pipeline, str(tmp_path / "p.yaml"))
    job = aiplatform.PipelineJob(display_name="x", template_path=str(tmp_path / "p.yaml"), project="my-project",
                                 location="us-central1", pipeline_root="gs://my-bucket/root",
                                 credentials=AnonymousCredentials())
    resource = submit.pipeline_job_resource(job)
    assert type(resource).__name__ == "PipelineJob" and resource.display_name == "x"


def test_kfp_local_output_layout(tmp_path):
    _checked("kfp", local_run.KFP_LOCAL_CHECKED_VERSIONS)

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def answer() -> int:
        return 42

    @dsl.pipeline(name="layout")
    def pipeline():
        answer()

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    pipeline()
    (run,) = tmp_path.glob("layout-*")
    output = local_run._executor_output(str(run), "answer")
    assert output is not None and output["parameterValues"]["Output"] == 42
    assert json.loads((run / "answer" / "executor_output.json").read_text()) == output


def test_scikit_learns_bundled_digits_file():
    """tfpipe's digits task reads the file `load_digits` reads, without importing scikit-learn."""
    import importlib.util
    import os

    import numpy as np
    from sklearn.datasets import load_digits

    from tfpipe.components.tasks import digits

    (folder,) = importlib.util.find_spec("sklearn").submodule_search_locations
    assert os.path.exists(os.path.join(folder, *digits.BUNDLED_DIGITS)), "scikit-learn moved its digits file"
    pixels, labels = digits.bundled_digits()
    reference = load_digits()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(labels, reference.target)
    assert labels.dtype == np.int64
