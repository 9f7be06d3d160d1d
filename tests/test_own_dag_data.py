"""A user's own KFP project wires data in and the model out.

prep → train ∥ continuous_eval → export_if_passed → deploy.

The project (its own `components/` and `pipelines/` packages, tfpipe imported as a library from the installed
wheel: `tests/support/wheel.py`) runs under kfp.local in a process of its own: with the SubprocessRunner, with the
DockerRunner in the project image (`tests/test_containers.py`), and on data already in a bucket (the GCS emulator),
imported as Datasets. Its prep step writes `Output[Dataset]`s of digits whose labels are shifted, so only a model
trained on the artifacts predicts them; its deploy step consumes the exported `Model`.
"""

import json
import pathlib
import subprocess
import textwrap

import pytest
import yaml

from tests.support.wheel import wheel_env
from tfpipe.controller_core import run_dir

PREP = '''
import os

from kfp import dsl
from kfp.dsl import Dataset, Output


@dsl.component(base_image=os.environ.get("MY_IMAGE", "localhost/my-project:1"), install_kfp_package=False)
def prepare_digits(shift: int, train: Output[Dataset], validation: Output[Dataset]):
    """The digits with every label shifted by `shift` (mod 10), as TFRecords tfpipe's digits task reads."""
    from tfpipe.components.tasks import digits

    (tx, ty), (ex, ey) = digits.load_arrays(digits.DigitsConfig())
    digits.write_tfrecords(train.path, tx, (ty + shift) % 10)
    digits.write_tfrecords(validation.path, ex, (ey + shift) % 10)
    train.metadata["format"] = validation.metadata["format"] = "tfrecord"
'''

DEPLOY = '''
import os

from kfp import dsl
from kfp.dsl import Input, Model


@dsl.component(base_image=os.environ.get("MY_IMAGE", "localhost/my-project:1"), install_kfp_package=False)
def deploy(model: Input[Model], exported: bool, shift: int, report_path: str):
    """Stands in for a deployment: loads the exported SavedModel and scores it on shifted labels."""
    import json

    import numpy as np
    import tensorflow as tf
    from tfpipe.components.tasks import digits

    report = {"exported": exported, "metadata": dict(model.metadata)}
    if exported:
        _, (ex, ey) = digits.load_arrays(digits.DigitsConfig())
        serve = tf.saved_model.load(model.path).signatures["serving_default"]
        predicted = serve(image=tf.constant(ex))["class_id"].numpy()
        report["accuracy_on_shifted"] = float(np.mean(predicted == (ey + shift) % 10))
    with open(report_path, "w") as f:
        json.dump(report, f)
'''

DAG = '''
import os
import sys

from kfp import compiler, dsl, local
from kfp.dsl import Dataset

from components.deploy import deploy
from components.prep import prepare_digits
from tfpipe.components import load_component

IMAGE = os.environ.get("MY_IMAGE")  # The project's image (tfpipe's, or one built on it); None: the specs' own.
train = load_component("train", image=IMAGE)
continuous_eval = load_component("continuous_eval", image=IMAGE)
export_if_passed = load_component("export_if_passed", image=IMAGE)
SHIFT = 3


def train_gate_deploy(data, model_dir, train_steps, report_path):
    trained = train(task="digits", model_dir=model_dir, train_steps=train_steps, steps_per_loop=50,
                    checkpoint_interval=50, **data)
    # kfp.local runs one task at a time: the evaluator goes after the trainer (on a cluster they run together).
    watched = continuous_eval(task="digits", model_dir=model_dir, thresholds='{"accuracy": ">= 0.8"}',
                              idle_timeout=300.0, **data).after(trained)
    gate = export_if_passed(passed=watched.outputs["passed"], task="digits", model_dir=model_dir)
    deploy(model=gate.outputs["model"], exported=gate.outputs["exported"], shift=SHIFT, report_path=report_path)


@dsl.pipeline(name="my-digits")
def my_digits(model_dir: str, train_steps: int, report_path: str):
    prep = prepare_digits(shift=SHIFT)
    data = dict(train_data=prep.outputs["train"], eval_data=prep.outputs["validation"])
    train_gate_deploy(data, model_dir, train_steps, report_path)


@dsl.pipeline(name="my-digits-imported")
def my_digits_imported(train_uri: str, eval_uri: str, model_dir: str, train_steps: int, report_path: str):
    """The same on data a bucket holds already, imported as Datasets."""
    data = {name: dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False).output
            for name, uri in (("train_data", train_uri), ("eval_data", eval_uri))}
    train_gate_deploy(data, model_dir, train_steps, report_path)


def runner():
    """kfp.local's runner: `MY_RUNNER=docker` runs each step in `MY_IMAGE`, with `MY_MOUNTS` bound."""
    if os.environ.get("MY_RUNNER") != "docker":
        return local.SubprocessRunner(use_venv=False)
    import docker

    mounts = [docker.types.Mount(target=path, source=path, type="bind")
              for path in os.environ["MY_MOUNTS"].split(":")]
    return local.DockerRunner(mounts=mounts, user=f"{os.getuid()}:{os.getgid()}", network_mode="host")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "compile":
        compiler.Compiler().compile(my_digits, args[0])
        sys.exit()
    local.init(runner=runner(), pipeline_root=args[0], raise_on_error=True)
    if command == "run":
        root, model_dir, steps, report = args
        my_digits(model_dir=model_dir, train_steps=int(steps), report_path=report)
    else:  # run-imported
        root, train_uri, eval_uri, model_dir, steps, report = args
        my_digits_imported(train_uri=train_uri, eval_uri=eval_uri, model_dir=model_dir, train_steps=int(steps),
                           report_path=report)
'''


def _project(root: pathlib.Path) -> pathlib.Path:
    project = root / "my-project"
    for package, modules in {"components": {"prep": PREP, "deploy": DEPLOY}, "pipelines": {"my_dag": DAG}}.items():
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
        for name, text in modules.items():
            (project / package / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    return project


def _run(python, project, *args, **env):
    """Runs the project's DAG module with the wheel's python (kfp.local's SubprocessRunner runs each step with it)."""
    done = subprocess.run([str(python), "-m", "pipelines.my_dag", *args], cwd=project, capture_output=True,
                          text=True, timeout=1200, env=wheel_env(python, project, **env))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def assert_deployed_what_it_learned(report: pathlib.Path, model_dir: str, steps: int) -> None:
    """The deploy step got the exported Model of step `steps`, which predicts the artifacts' shifted labels."""
    deployed = json.loads(report.read_text())
    assert deployed["exported"] and deployed["metadata"]["exported"] and deployed["metadata"]["step"] == steps
    assert deployed["metadata"]["checkpoint_fingerprint"] and deployed["metadata"]["metrics"]["accuracy"] >= 0.8
    assert deployed["accuracy_on_shifted"] >= 0.8  # Learned the artifacts' (shifted) labels, not the bundled ones.
    assert set(run_dir.read_json(f"{model_dir}/run_config.json")["data"]) == {"train_data", "eval_data"}


@pytest.mark.timeout(1200)  # One kfp.local run of five steps, each step a process that imports TensorFlow.
def test_own_project_wires_datasets_into_training_and_the_exported_model_out(installed, tmp_path):
    """A rerun on the same model_dir gets the same data at new artifact URIs: that it resumes (and that changed data
    is refused) is `tests/test_data_inputs.py::test_the_same_data_at_another_uri_resumes_and_changed_data_is_refused`,
    in process."""
    project = _project(tmp_path)
    _run(installed, project, "compile", str(tmp_path / "my.yaml"))
    spec = yaml.safe_load((tmp_path / "my.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("train", "continuous-eval"):
        artifacts = tasks[step]["inputs"]["artifacts"]
        assert artifacts["train_data"]["taskOutputArtifact"] == {"producerTask": "prepare-digits",
                                                                  "outputArtifactKey": "train"}
        assert artifacts["eval_data"]["taskOutputArtifact"]["outputArtifactKey"] == "validation"
    assert tasks["deploy"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "producerTask": "export-if-passed", "outputArtifactKey": "model"}

    model_dir, report = tmp_path / "run", tmp_path / "report.json"
    _run(installed, project, "run", str(tmp_path / "root"), str(model_dir), "200", str(report))
    assert_deployed_what_it_learned(report, str(model_dir), 200)


@pytest.mark.timeout(1200)  # One kfp.local run of six steps.
def test_own_project_trains_on_datasets_imported_from_a_bucket(installed, gcs_emulator, gcs_bucket, tmp_path):
    """The data and the run directory on gs:// (the emulator): the DAG imports the data as Datasets."""
    from tests.test_data_inputs import SHIFT, prepare

    assert SHIFT == 3  # The project's deploy step scores with its own SHIFT.
    train_uri, eval_uri = prepare(f"{gcs_bucket}/data/train"), prepare(f"{gcs_bucket}/data/eval", "eval")
    model_dir, report = f"{gcs_bucket}/runs/own", tmp_path / "report.json"
    _run(installed, _project(tmp_path), "run-imported", str(tmp_path / "root"), train_uri, eval_uri, model_dir, "200",
         str(report), **gcs_emulator.env)
    assert_deployed_what_it_learned(report, model_dir, 200)
    recorded = run_dir.read_json(f"{model_dir}/run_config.json")["data"]
    listed = json.dumps(recorded)  # The objects' names, sizes and CRC32Cs: the bucket's own checksums.
    assert "crc32c:" in listed and "part-00000-of-00002.tfrecord" in listed and gcs_bucket not in listed


def test_the_packaged_pipeline_imports_data_uris_as_datasets():
    from tfpipe.pipelines.train_eval_export import build_pipeline

    pipeline = build_pipeline(backend="gke", image="registry.example.com/t/tfpipe:1",
                              data_inputs=["eval_data", "train_data"])
    spec = pipeline.pipeline_spec
    assert {"train_data", "eval_data"} <= set(spec.root.input_definitions.parameters)
    tasks = spec.root.dag.tasks
    importers = {name for name, task in tasks.items() if task.component_ref.name.startswith("comp-importer")}
    assert len(importers) == 2
    for step in ("check-inputs", "train", "continuous-eval"):
        producers = {a.task_output_artifact.producer_task for a in tasks[step].inputs.artifacts.values()}
        assert producers == importers, step
    with pytest.raises(ValueError, match=r"`data_inputs` must name some of \['train_data', 'eval_data'\]"):
        build_pipeline(backend="gke", image="registry.example.com/t/tfpipe:1", data_inputs=["test_data"])


def test_compile_data_input_flags_add_the_dataset_parameters(tmp_path, capsys):
    """`tfpipe compile --data-input NAME` (the README's line): the compiled package takes the URI parameters and
    imports them as Datasets; a name the pipeline has no import for is one line, exit 2, nothing written."""
    from tfpipe.pipelines import cli, submit

    package = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", "vertex", "--image", "registry.example.com/t/tfpipe:1",
                     "--data-input", "train_data", "--data-input", "eval_data", "-o", str(package)]) == 0
    spec = submit.load_pipeline_package(package)[0]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["train_data"]["parameterType"] == "STRING" and "defaultValue" not in parameters["train_data"]
    importers = [name for name in spec["root"]["dag"]["tasks"] if name.startswith("importer")]
    assert len(importers) == 2
    train_inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["artifacts"]
    assert {a["taskOutputArtifact"]["producerTask"] for a in train_inputs.values()} == set(importers)
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal of a choice: one line, status 2.
        cli.main(["compile", "--backend", "vertex", "--image", "registry.example.com/t/tfpipe:1",
                  "--data-input", "test_data", "-o", str(tmp_path / "q.yaml")])
    assert exit_info.value.code == 2 and "invalid choice: 'test_data'" in capsys.readouterr().err
    assert not (tmp_path / "q.yaml").exists()


@pytest.mark.timeout(1200)  # One kfp.local run of the packaged pipeline.
def test_run_local_trains_on_data_uris(tmp_path):
    from tests.test_data_inputs import prepare
    from tfpipe.pipelines.local_run import run_local

    train_uri, eval_uri = prepare(tmp_path / "train"), prepare(tmp_path / "eval", "eval")
    summary = run_local(pipeline_root=str(tmp_path / "root"), model_dir=str(tmp_path / "run"), train_steps=200,
                        train_data=train_uri, eval_data=eval_uri, thresholds='{"accuracy": ">= 0.8"}')
    assert summary.final_step == 200 and summary.exported  # High accuracy on shifted labels: trained on them.
    assert summary.best_metrics["accuracy"] >= 0.8
    recorded = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert set(recorded["data"]) == {"train_data", "eval_data"}
