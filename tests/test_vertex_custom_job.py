"""The Vertex custom-job route with the real google-cloud-pipeline-components (GCPC).

Pipelines are compiled as users compile them (`tfpipe compile --backend vertex ...`, `build_pipeline`); each
custom-job step is then run the way a Vertex run runs it: its placeholders resolved, GCPC's own launcher code
building the request, the real `aiplatform_v1.JobServiceClient` sending it to a loopback JobService that parses
it strictly into `aiplatform_v1.CustomJob` (`tests/support/vertex_custom_jobs.py`). What a custom job must get
right is asserted on that parsed request: the scheduling strategy (SPOT), the machine, the accelerator type and
count, the TPU topology, the replicas per pool, and the wrapped component's inputs reaching its container.
"""

import json
import pathlib
import re
from typing import Any, Dict

import google_cloud_pipeline_components
import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from google_cloud_pipeline_components.v1 import custom_job as gcpc_custom_job
from kfp import compiler, dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from tfpipe.components import kfp_components
from tfpipe.pipelines import cli, vertex
from tfpipe.pipelines.profiles import parse_profile
from tfpipe.components.export_if_passed import definition as export_if_passed
from tfpipe.pipelines.train_eval_export import PIPELINE_INPUTS, build_pipeline
from tests.support.vertex_custom_jobs import FakeJobService, find_task, launch

IMAGE = "us-docker.pkg.dev/proj/ml/tfpipe:7"
Strategy = aiplatform_v1.Scheduling.Strategy
Accelerator = aiplatform_v1.AcceleratorType
# Values of the steps' inputs that come from the pipeline's inputs or from other steps at run time.
RUNTIME = {
    **{item.name: item.default for item in (*PIPELINE_INPUTS, *export_if_passed.INPUTS) if not item.required},
    "task": "digits", "task_config": '{"batch_size": 32}', "model_dir": "gs://bucket/runs/7", "train_steps": 500,
    "steps_per_loop": 50, "checkpoint_interval": 100, "max_to_keep": 3, "idle_timeout": 600.0,
    "best_metric": "accuracy", "best_mode": "higher", "best_eval_name": "validation", "passed": True,
    "thresholds": '{"accuracy": ">= 0.9"}', "export_dir": "gs://bucket/serving",
    "precision": "mixed_float16", "jit_compile": True, "profile_steps": "100-110",
}


@pytest.fixture
def service():
    with FakeJobService() as server:
        yield server


def compile_with_cli(tmp_path, *options: str) -> Dict[str, Any]:
    path = tmp_path / "vertex.yaml"
    assert cli.main(["compile", "--backend", "vertex", "--image", IMAGE, *options, "-o", str(path)]) == 0
    spec = yaml.safe_load(path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    return spec


def compile_pipeline(tmp_path, **kwargs: Any) -> Dict[str, Any]:
    path = tmp_path / "vertex.yaml"
    compiler.Compiler().compile(build_pipeline(backend="vertex", image=IMAGE, **kwargs), str(path))
    return yaml.safe_load(path.read_text())


def worker_inputs(pool: aiplatform_v1.WorkerPoolSpec) -> Dict[str, Any]:
    """The parameter values the wrapped component's container reads (its `--executor_input`)."""
    args = list(pool.container_spec.args)
    executor_input = args[args.index("--executor_input") + 1]
    message = json_format.Parse(executor_input, pipeline_spec_pb2.ExecutorInput())
    return json_format.MessageToDict(message)["inputs"]["parameterValues"]


def test_a_spot_gpu_train_step_on_three_replicas(tmp_path, service):
    spec = compile_with_cli(tmp_path, "--train-resources", "cpu=8,memory=32G,gpu=l4:1,spot", "--train-replicas", "3")
    job = launch(spec, "train", service, tmp_path, runtime=RUNTIME)

    assert job.display_name == "train"
    assert job.job_spec.scheduling.strategy == Strategy.SPOT
    assert job.job_spec.scheduling.restart_job_on_worker_restart  # A lost replica restarts them all.
    pools = job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2]  # The chief's pool, then the workers'.
    for pool in pools:
        assert pool.machine_spec.machine_type == "g2-standard-8"
        assert (pool.machine_spec.accelerator_type, pool.machine_spec.accelerator_count) == (Accelerator.NVIDIA_L4, 1)
        assert pool.machine_spec.tpu_topology == ""
        assert pool.container_spec.image_uri == IMAGE
        inputs = worker_inputs(pool)
        assert inputs["distribution_strategy"] == "multi_worker_mirrored"  # Not GCPC's scheduling `strategy`.
        assert {k: inputs[k] for k in ("task", "task_config", "model_dir")} == {
            "task": "digits", "task_config": '{"batch_size": 32}', "model_dir": "gs://bucket/runs/7"}
        assert "strategy" not in inputs and "worker_pool_specs" not in inputs
    gcp_resources = json.loads((tmp_path / "train-gcp_resources.json").read_text())
    assert gcp_resources["resources"][0]["resourceUri"].endswith("/v1/projects/proj/locations/us-central1/customJobs/1")


def test_tpu_steps_carry_machine_type_accelerator_and_topology(tmp_path, service):
    spec = compile_pipeline(tmp_path, profiles={"train": "tpu=v5e:2x4", "eval": "tpu=v5e:2x2,spot",
                                                "export": "tpu=v4:2x2x1"})
    expected = {
        ("train", None): ("ct5lp-hightpu-8t", Accelerator.TPU_V5_LITEPOD, 8, "2x4", Strategy.STANDARD),
        ("continuous-eval", None): ("ct5lp-hightpu-4t", Accelerator.TPU_V5_LITEPOD, 4, "2x2", Strategy.SPOT),
        ("export", "comp-export-if-passed"): ("ct4p-hightpu-4t", Accelerator.TPU_V4_POD, 4, "2x2x1", Strategy.STANDARD),
        ("export", "comp-export-if-passed-2"): ("ct4p-hightpu-4t", Accelerator.TPU_V4_POD, 4, "2x2x1", Strategy.STANDARD),
        ("evaluate", "comp-condition-2-2"): ("ct5lp-hightpu-4t", Accelerator.TPU_V5_LITEPOD, 4, "2x2", Strategy.SPOT),
    }
    for (task, within), (machine, accelerator, count, topology, strategy) in expected.items():
        job = launch(spec, task, service, tmp_path, runtime=RUNTIME, within=within)
        (pool,) = job.job_spec.worker_pool_specs
        assert pool.replica_count == 1, task
        machine_spec = pool.machine_spec
        assert (machine_spec.machine_type, machine_spec.accelerator_type, machine_spec.accelerator_count,
                machine_spec.tpu_topology, job.job_spec.scheduling.strategy) == (
            machine, accelerator, count, topology, strategy), task
        assert worker_inputs(pool)["model_dir"] == "gs://bucket/runs/7"


def test_a_cpu_only_spot_step_keeps_gcpc_defaults_for_what_the_profile_leaves_out(tmp_path, service):
    spec = compile_with_cli(tmp_path, "--export-resources", "cpu=8,spot")
    job = launch(spec, "export", service, tmp_path, runtime=RUNTIME, within="comp-export-if-passed")
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n1-standard-8"
    assert pool.machine_spec.accelerator_type == Accelerator.ACCELERATOR_TYPE_UNSPECIFIED
    assert job.job_spec.scheduling.strategy == Strategy.SPOT
    assert job.job_spec.scheduling.timeout.total_seconds() == 604800  # GCPC's default: 7 days.
    assert (pool.disk_spec.boot_disk_type, pool.disk_spec.boot_disk_size_gb) == ("pd-ssd", 100)
    assert job.job_spec.service_account == "runner@proj.iam.gserviceaccount.com"  # The run's, not Vertex's agent.
    # Steps without spot or TPUs keep the task setters: no custom job.
    _, _, train = find_task(spec, "train")
    assert train["image"] == IMAGE


def test_the_request_is_refused_when_a_component_input_replaces_the_jobs_own(tmp_path, service):
    """What happened when the components had an input named `strategy`: the component's value replaced GCPC's
    scheduling strategy, and the launcher's client cannot even build the request."""

    @dsl.component(base_image=IMAGE)
    def clashing(strategy: str = "mirrored") -> str:
        return strategy

    job = gcpc_custom_job.create_custom_training_job_from_component(
        clashing, strategy="SPOT", labels={}, reserved_ip_ranges=[], psc_interface_config={})

    @dsl.pipeline(name="clash")
    def pipeline():
        job(strategy="mirrored")

    path = tmp_path / "clash.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    with pytest.raises(KeyError, match=r"'mirrored'"):  # Not a member of aiplatform_v1.Scheduling.Strategy.
        launch(yaml.safe_load(path.read_text()), "clashing", service, tmp_path)
    assert service.jobs == []
    # tfpipe refuses such a component before compiling.
    with pytest.raises(ValueError, match=r"component 'clashing' has input\(s\)/output\(s\) \['strategy'\] that "
                                         r"GCPC's custom job also has"):
        vertex.vertex_custom_job_component(clashing, parse_profile("spot", step="train"))


@pytest.mark.parametrize("function", kfp_components.COMPONENT_FUNCTIONS, ids=lambda f: f.__name__)
def test_no_component_input_or_output_is_named_as_one_of_gcpcs_custom_job(function):
    component = dsl.component(function, base_image=IMAGE, install_kfp_package=False)
    names = set(component.component_spec.inputs or {}) | set(component.component_spec.outputs or {})
    # The job's own interface, read from the real GCPC: the job it makes of a component without inputs.
    @dsl.container_component
    def nothing():
        return dsl.ContainerSpec(image=IMAGE)

    job = gcpc_custom_job.create_custom_training_job_from_component(nothing)
    gcpc_names = set(job.component_spec.inputs) | set(job.component_spec.outputs or {})
    assert {"strategy", "worker_pool_specs", "project", "location", "gcp_resources"} <= gcpc_names
    assert names & gcpc_names == set()
    vertex.check_no_gcpc_collision(component)


def test_gcpc_internals_are_pinned_to_the_checked_gcpc_version(tmp_path):
    """`vertex.set_tpu_topology`, `vertex.gcpc_job_interface` and the empty options rely on how GCPC builds its
    job component. A new GCPC release fails here until they are checked against it (then add it to
    `vertex.GCPC_CHECKED_VERSIONS`)."""
    installed = ".".join(google_cloud_pipeline_components.__version__.split(".")[:2])
    assert installed in vertex.GCPC_CHECKED_VERSIONS, (
        f"GCPC {google_cloud_pipeline_components.__version__} is installed; tfpipe's use of its internals was "
        f"checked against {vertex.GCPC_CHECKED_VERSIONS} only")

    # gcpc_job_interface: the custom job's own inputs and outputs, as GCPC's public CustomTrainingJobOp has them.
    op = gcpc_custom_job.CustomTrainingJobOp.component_spec
    assert vertex.gcpc_job_interface() == set(op.inputs) | set(op.outputs)

    # set_tpu_topology: the topology lands in the compiled worker pools.
    job = vertex.vertex_custom_job_component(kfp_components.components_for_image(kfp_components.LOCAL_IMAGE).train, parse_profile("tpu=v5e:2x2", step="train"))
    assert [pool["machine_spec"]["tpu_topology"] for pool in job.component_spec.inputs["worker_pool_specs"].default] \
        == ["2x2"]

    # The empty options: every optional input of the job has a default, so no placeholder is left unfilled.
    @dsl.pipeline(name="one-job")
    def pipeline(model_dir: str):
        job(task="digits", model_dir=model_dir, train_steps=1)

    path = tmp_path / "job.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    (component,) = yaml.safe_load(path.read_text())["components"].values()
    parameters = component["inputDefinitions"]["parameters"]
    assert [n for n, p in parameters.items() if p.get("isOptional") and "defaultValue" not in p] == []


@pytest.mark.parametrize(
    "body, says",
    [
        ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineTyp": "n1"}}]}}, "machineTyp"),
        ({"displayName": "x", "jobSpec": {"scheduling": {"strategy": "CHEAP"}}}, "CHEAP"),
        ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"replicaCount": "two"}]}}, "two"),
    ],
)
def test_the_fake_job_service_refuses_what_vertex_would(service, body, says):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{service.url}/v1/projects/p/locations/l/customJobs", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    error = json.loads(caught.value.read())["error"]
    assert caught.value.code == 400 and error["status"] == "INVALID_ARGUMENT" and says in error["message"]
    assert service.jobs == []


# ---------------------------------------------- Vertex AI TensorBoard and Model Registry

TENSORBOARD = "projects/proj/locations/us-central1/tensorboards/42"
PARENT = "projects/proj/locations/europe-west4/models/77"


@pytest.fixture
def model_service():
    from tests.support.vertex_custom_jobs import FakeModelService

    with FakeModelService() as server:
        yield server


def committed_export(uri, *, fingerprint="ckpt-1000-fingerprint"):
    """A folder committed at `uri` as export commits one (files, then its marker with their manifest)."""
    import tempfile

    from tfpipe.components.common import commits
    from tfpipe.components.export.runtime import EXPORT_INFO

    with tempfile.TemporaryDirectory() as source:
        (pathlib.Path(source) / "variables").mkdir()
        (pathlib.Path(source) / "saved_model.pb").write_bytes(b"a graph")
        (pathlib.Path(source) / "variables" / "variables.index").write_bytes(b"an index")
        info = {"step": 1000, "checkpoint_fingerprint": fingerprint,
                "manifest": commits.manifest(source, marker=EXPORT_INFO)}
        assert commits.publish(source, uri, marker=EXPORT_INFO, info=info)
    return uri


def exported_model(uri, **metadata):
    from kfp import dsl as kfp_dsl

    return kfp_dsl.Model(uri=uri, metadata={
        "step": 1000, "checkpoint": "gs://bucket/runs/7/ckpt-1000", "precision": "mixed_float16",
        "checkpoint_fingerprint": "ckpt-1000-fingerprint",
        "metrics": {"accuracy": 0.953125, "loss": 0.1875, "step": 1000}, **metadata})


def registration_inputs(spec, within, exported):
    """What the compiled model-registration step makes of the export's Model artifact `exported` (its function,
    run on the inputs the compiled task gives it)."""
    from tfpipe.components.registration import definition as registration_definition
    from tests.support.vertex_custom_jobs import task_inputs

    step, component, _ = find_task(spec, "model-registration", within)
    values = task_inputs(step, component, {})
    # The export step runs outside the `passed` branch (its outputs are the graph's): the branch receives its model.
    assert step["inputs"]["artifacts"]["model"] == {"componentInputArtifact": "pipelinechannel--export-model"}
    branch = spec["components"]["comp-export-if-passed"]["dag"]["tasks"]["condition-1"]
    assert branch["inputs"]["artifacts"]["pipelinechannel--export-model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model", "producerTask": "export"}
    unmanaged = registration_definition.UnmanagedContainerModel(uri="gs://root/model-registration/unmanaged")
    labels, description = registration_definition.model_registration(
        model=exported, serving_image=values["serving_image"], run_id="job-7", unmanaged_container_model=unmanaged)
    return {"uri": unmanaged.uri, "metadata": dict(unmanaged.metadata)}, labels, description


def test_vertex_tensorboard_uploads_train_and_eval_curves_from_custom_jobs(tmp_path, service):
    from tfpipe.components.model_dir.definition import resolve_run_dirs

    spec = compile_with_cli(tmp_path, "--vertex-tensorboard", TENSORBOARD, "--train-resources", "gpu=l4:1")
    _, train_dir, eval_dir, _ = resolve_run_dirs("/gcs/bucket/runs/7", "gs://root", "job-7")
    assert (train_dir, eval_dir) == ("gs://bucket/runs/7/vertex/train", "gs://bucket/runs/7/vertex/eval")
    for task, base in (("train", train_dir), ("continuous-eval", eval_dir)):
        job = launch(spec, task, service, tmp_path, runtime={**RUNTIME, "base_output_directory": base})
        assert job.job_spec.tensorboard == TENSORBOARD, task
        assert job.job_spec.base_output_directory.output_uri_prefix == base  # Vertex's AIP_TENSORBOARD_LOG_DIR root.
        assert job.job_spec.service_account == "runner@proj.iam.gserviceaccount.com"  # The run's: it may upload.
        (pool,) = job.job_spec.worker_pool_specs
        inputs = worker_inputs(pool)
        assert (inputs["precision"], inputs["jit_compile"]) == ("mixed_float16", True)
        assert "tensorboard" not in inputs and "base_output_directory" not in inputs
    train_pool = launch(spec, "train", service, tmp_path, runtime={**RUNTIME, "base_output_directory": train_dir}
                        ).job_spec.worker_pool_specs[0]
    assert worker_inputs(train_pool)["profile_steps"] == "100-110"
    assert train_pool.machine_spec.accelerator_type == Accelerator.NVIDIA_L4
    # The model-dir step gives each job its own directory under the run's.
    _, _, resolver = find_task(spec, "resolve-run-dirs")
    assert resolver["image"] == IMAGE


def test_the_final_evaluation_runs_as_the_run_with_its_tensorboard_and_output_directory(tmp_path, service):
    from tfpipe.components.model_dir.definition import resolve_run_dirs

    spec = compile_with_cli(tmp_path, "--vertex-tensorboard", TENSORBOARD)
    *_, final_dir = resolve_run_dirs("/gcs/bucket/runs/7", "gs://root", "job-7")
    assert final_dir == "gs://bucket/runs/7/vertex/final"
    # The run's final_output_dir reaches the export stage's graph...
    stages = [t for c in spec["components"].values() for t in c.get("dag", {}).get("tasks", {}).values()
              if t["taskInfo"]["name"].startswith("export-if-")]
    assert len(stages) == 2 and all(t["inputs"]["parameters"]["final_output_dir"] == {
        "componentInputParameter": "pipelinechannel--resolve-run-dirs-final_output_dir"} for t in stages)
    # ...and becomes the final evaluation job's base output directory, beside the run's identity and TensorBoard.
    holders = [name for name, c in spec["components"].items() if "evaluate" in c.get("dag", {}).get("tasks", {})]
    assert holders
    for within in holders:
        step, _, _ = find_task(spec, "evaluate", within)
        assert "final_output_dir" in json.dumps(step["inputs"]["parameters"]["base_output_directory"])
        job = launch(spec, "evaluate", service, tmp_path, within=within,
                     runtime={**RUNTIME, "base_output_directory": final_dir})
        assert job.job_spec.service_account == "runner@proj.iam.gserviceaccount.com"
        assert job.job_spec.tensorboard == TENSORBOARD
        assert job.job_spec.base_output_directory.output_uri_prefix == final_dir


@pytest.mark.parametrize("parent", [PARENT, None], ids=["new-version", "new-model"])
def test_a_gated_export_is_registered_in_model_registry(tmp_path, model_service, monkeypatch, parent, gcs_bucket):
    from tests.support.vertex_custom_jobs import upload_model

    options = ["--register-model", "digits classifier"] + (["--parent-model", parent] if parent else [])
    spec = compile_with_cli(tmp_path, *options)
    within = "comp-condition-1"  # The export stage's `passed` branch: registration only follows a gated export.
    uri = committed_export(f"{gcs_bucket}/root/export/model")
    unmanaged, labels, description = registration_inputs(spec, within, exported_model(uri))
    assert unmanaged == {"uri": uri,
                         "metadata": {"containerSpec": {"imageUri": vertex.DEFAULT_SERVING_IMAGE}}}
    assert labels == {"tfpipe-run": "job-7", "tfpipe-step": "1000", "tfpipe-precision": "mixed_float16",
                      "metric-accuracy": "0_953125", "metric-loss": "0_1875"}
    artifacts = {"unmanaged_container_model": unmanaged}
    if parent:
        step = spec["components"][within]["dag"]["tasks"]["importer"]
        label = spec["components"][step["componentRef"]["name"]]["executorLabel"]
        importer = spec["deploymentSpec"]["executors"][label]["importer"]
        artifacts["parent_model"] = {"uri": importer["artifactUri"]["constant"], "metadata": importer["metadata"]}

    output = upload_model(spec, "model-upload", model_service, tmp_path, monkeypatch, within=within,
                          runtime={"labels": labels, "description": description}, artifacts=artifacts)

    (request,) = model_service.uploads
    assert [method for method, _ in model_service.calls()] == ["POST", "GET"]  # Created, then polled until done.
    assert request.parent == ("projects/proj/locations/europe-west4" if parent
                              else "projects/proj/locations/us-central1")  # The parent's region, else the run's.
    assert request.parent_model == (parent or "")
    model = request.model
    assert model.display_name == "digits classifier"
    assert model.artifact_uri == uri
    assert model.container_spec.image_uri == vertex.DEFAULT_SERVING_IMAGE
    assert {k: v for k, v in model.labels.items() if not k.startswith("vertex-ai-pipelines")} == labels
    assert model.description == description and "accuracy 0.953125" in description
    assert model.pipeline_job == "projects/proj/locations/" + (
        "europe-west4" if parent else "us-central1") + "/pipelineJobs/job-7"
    (registered,) = output["artifacts"]["model"]["artifacts"]
    expected = f"{parent or 'projects/proj/locations/us-central1/models/1'}@1"
    assert registered["metadata"]["resourceName"] == expected


def test_an_export_changed_after_its_commit_is_never_registered(tmp_path, gcs_bucket, capsys):
    """The registration step verifies the export against its marker's manifest before anything is uploaded; a
    refusal ends the step with one line and status 1, as the components' own steps do (no traceback)."""
    import tensorflow as tf

    spec = compile_with_cli(tmp_path, "--register-model", "digits classifier")
    within = "comp-condition-1"

    def refused(exported) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            registration_inputs(spec, within, exported)
        err = capsys.readouterr().err
        assert stopped.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith("model-registration: refused: Not registering the export at "), err
        return err

    changed = committed_export(f"{gcs_bucket}/changed/model")
    with tf.io.gfile.GFile(f"{changed}/variables/variables.index", "wb") as f:
        f.write(b"other weights")
    assert re.search(r"/changed/model: its files differ from its marker's manifest: changed \['variables/",
                     refused(exported_model(changed)))
    other = committed_export(f"{gcs_bucket}/other/model", fingerprint="another-checkpoint")
    assert ("its marker names checkpoint fingerprint 'another-checkpoint', the export artifact "
            "'ckpt-1000-fingerprint'") in refused(exported_model(other))
    assert "it has no commit marker" in refused(exported_model(f"{gcs_bucket}/nothing/model"))


@pytest.mark.parametrize("options, says", [
    (["--vertex-tensorboard", "tensorboards/42"], "`vertex_tensorboard` must be a Vertex AI TensorBoard resource name"),
    (["--register-model", 'say "hi"'], "`register_model` must be a model display name"),
    (["--register-model", "m", "--parent-model", "models/7"], "`parent_model` must be a Vertex AI model resource"),
    (["--parent-model", PARENT], "`parent_model` (projects/proj/locations/europe-west4/models/77) needs "
                                 "`register_model`"),
    (["--register-model", "m", "--serving-image", "not an image"], "`serving_image` must be a container image"),
])
def test_vertex_options_are_checked_before_compiling(tmp_path, capsys, options, says):
    path = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", "vertex", "--image", IMAGE, *options, "-o", str(path)]) == cli.USAGE_ERROR
    error = capsys.readouterr().err
    assert says in error and len(error.strip().splitlines()) == 1
    assert not path.exists()
    assert cli.main(["compile", "--backend", "gke", "--image", IMAGE, "--vertex-tensorboard", TENSORBOARD,
                     "-o", str(path)]) == 2
    assert "`vertex_tensorboard` needs backend 'vertex', got backend 'gke'" in capsys.readouterr().err
