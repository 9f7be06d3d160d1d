"""The built-in `model_garden` task: TensorFlow Model Garden experiments trained, evaluated and exported by tfpipe.

tf-models-official 2.20 requires TensorFlow 2.20, so the tests that run Model Garden run in the TF 2.20 stage
(`make test-tf220`, which installs the `model-garden` extra); on TF 2.21 they are skipped with that reason. On
TF 2.20 with CI=true a missing tf-models-official fails them (tests/support/requirements.py).
"""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.continuous_eval import runtime as continuous_eval
from tfpipe.components.export import runtime as export
from tfpipe.components import tasks
from tfpipe.components.train import runtime as train
from tfpipe.controller_core import eval_records, run_dir
from tests.support import requirements

HAVE_MODEL_GARDEN = importlib.util.find_spec("official") is not None
TF_LINE = ".".join(tf.__version__.split(".")[:2])
MOCK = {
    "experiment": "mock",
    "params_override": {"trainer": {
        "validation_steps": 2,  # mock's validation data repeats: an evaluation is two batches.
        "optimizer_config": {"optimizer": {"type": "sgd"}, "learning_rate": {"type": "constant"}},
    }},
}


def _require_model_garden() -> None:
    """Skips (TF 2.21, where tf-models-official cannot be installed) or fails (TF 2.20 in CI) without it."""
    if HAVE_MODEL_GARDEN:
        return
    if TF_LINE != "2.20":
        pytest.skip(f"tf-models-official 2.20 requires TensorFlow 2.20 (this is {tf.__version__}): run in "
                    "`make test-tf220`")
    requirements.unavailable("tf-models-official is not installed: `pip install 'tfpipe[model-garden]'`")


@pytest.fixture
def model_garden():
    _require_model_garden()


BIAS = "model/network/layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE"


def _assert_same_variables(path: str, expected: str, prefixes) -> list:
    """Asserts that the checkpoints at `path` and `expected` hold equal values under `prefixes`; returns the names."""
    names = [name for name, _ in tf.train.list_variables(expected) if name.startswith(prefixes)]
    for name in names:
        np.testing.assert_array_equal(tf.train.load_variable(path, name), tf.train.load_variable(expected, name),
                                      err_msg=name)
    return names


def _mock(**trainer):
    config = json.loads(json.dumps(MOCK))
    config["params_override"]["trainer"].update(trainer)
    return json.dumps(config)


def test_task_config_is_checked_before_model_garden_is_imported():
    with pytest.raises(checks.InputError, match=r"`task_config\['experiment'\]` is required for task 'model_garden'"):
        tasks.build_task("model_garden", {})
    with pytest.raises(checks.InputError, match=r"`task_config` for task 'model_garden' has unknown key\(s\) \['exp'\]"):
        tasks.build_task("model_garden", {"exp": "mock"})


@pytest.mark.skipif(HAVE_MODEL_GARDEN, reason="tf-models-official is installed here")
def test_without_the_extra_the_task_says_which_extra_to_install():
    with pytest.raises(checks.MissingExtraError, match=r"pip install 'tfpipe\[model-garden\]'"):
        tasks.build_task("model_garden", {"experiment": "mock"})


def test_unknown_experiment_and_bad_override_are_input_errors(model_garden):
    with pytest.raises(checks.InputError, match=r"`task_config\['experiment'\]` \('no_such'\) is not a registered"):
        tasks.build_task("model_garden", {"experiment": "no_such"})
    with pytest.raises(checks.InputError, match=r"`task_config\['params_override'\]` does not fit experiment 'mock'"):
        tasks.build_task("model_garden", {"experiment": "mock", "params_override": {"trainer": {"nope": 1}}})
    with pytest.raises(checks.InputError, match=r"Optimizer type must be specified"):  # Model Garden's own check.
        tasks.build_task("model_garden", {"experiment": "mock"})


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    _require_model_garden()
    model_dir = str(tmp_path_factory.mktemp("mock"))
    config = _mock(best_checkpoint_eval_metric="validation_loss", best_checkpoint_metric_comp="lower")
    result = train.run(task="model_garden", task_config=config, model_dir=model_dir, train_steps=6,
                       steps_per_loop=2, checkpoint_interval=2)
    watched = continuous_eval.run(task="model_garden", task_config=config, model_dir=model_dir, poll_interval=0.1,
                                  idle_timeout=60)
    return model_dir, config, result, watched


def test_mock_trains_with_model_gardens_trainer_checkpoints_and_names(model_garden, mock_run):
    model_dir, _, result, _ = mock_run
    assert result.final_step == 6 and set(result.metrics) >= {"training_loss", "learning_rate", "acc"}
    # Model Garden's checkpoint layout: its trainer's global_step, the model and the optimizer; no data iterator.
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(f"{model_dir}/ckpt-6")}
    assert {"global_step", "model", "optimizer"} <= names and "train_iterator" not in names
    # Model Garden's contracts: its params.yaml (as train.py writes it), its summary names under train/.
    params = open(f"{model_dir}/params.yaml").read()
    assert "best_checkpoint_eval_metric: validation_loss" in params and "validation_steps: 2" in params
    tags = {value.tag for path in tf.io.gfile.glob(f"{model_dir}/train/events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(path) for value in event.summary.value}
    assert {"training_loss", "learning_rate"} <= tags
    assert run_dir.read_json(f"{model_dir}/run_config.json")["task_config"]["experiment"] == "mock"


def test_mock_every_checkpoint_evaluated_once_best_by_the_experiments_metric(model_garden, mock_run):
    model_dir, _, _, watched = mock_run
    assert watched.evaluated == [2, 4, 6] and watched.best_metric == "validation_loss"
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    losses = {step: records.read(step)["metrics"]["validation_loss"] for step in (2, 4, 6)}
    assert watched.best["step"] == min(losses, key=losses.get)
    # Model Garden's aggregated metric (mock's `counter`, from aggregate_logs/reduce_aggregated_logs) is reported.
    assert records.read(2)["metrics"]["counter"] == 2.0


def test_mock_export_is_refused_in_one_line_naming_the_experiment(model_garden, mock_run, tmp_path):
    model_dir, config, _, _ = mock_run
    with pytest.raises(checks.InputError, match=r"experiment 'mock' \(MockTaskConfig\) has no Model Garden serving"):
        export.run(task="model_garden", task_config=config, model_dir=model_dir, output_path=str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m")


def test_mock_resume_continues_exactly_and_warm_start_loads_init_checkpoint(model_garden, mock_run, tmp_path):
    model_dir, config, _, _ = mock_run
    # Resumed (4, then 6) equals uninterrupted (6): weights, optimizer and step restored (mock's data is constant).
    resumed = str(tmp_path / "resumed")
    for steps in (4, 6):
        train.run(task="model_garden", task_config=config, model_dir=resumed, train_steps=steps, steps_per_loop=2,
                  checkpoint_interval=2)
    assert BIAS in _assert_same_variables(f"{resumed}/ckpt-6", f"{model_dir}/ckpt-6",
                                          ("model/", "optimizer/", "global_step/"))
    # Warm start: init_checkpoint is loaded when the run has no checkpoint (learning rate 0 keeps it unchanged).
    warm = json.loads(_mock())
    warm["params_override"]["task"] = {"init_checkpoint": f"{model_dir}/ckpt-6"}  # mock: no init_checkpoint_modules
    warm["params_override"]["trainer"]["optimizer_config"]["learning_rate"] = {
        "type": "constant", "constant": {"learning_rate": 0.0}}
    started = str(tmp_path / "warm")
    train.run(task="model_garden", task_config=json.dumps(warm), model_dir=started, train_steps=2, steps_per_loop=2,
              checkpoint_interval=2)
    assert BIAS in _assert_same_variables(f"{started}/ckpt-2", f"{model_dir}/ckpt-6", ("model/",))
    assert not np.array_equal(tf.train.load_variable(f"{model_dir}/ckpt-2", BIAS),
                              tf.train.load_variable(f"{model_dir}/ckpt-6", BIAS))  # Training moved the weights.


@pytest.mark.timeout(900)
def test_tiny_resnet_experiment_through_run_local(model_garden, tmp_path):
    from tests.support.model_garden_data import IMAGE_SIZE, NUM_CLASSES, tiny_resnet_config
    from tfpipe.pipelines.local_run import run_local

    config = tiny_resnet_config(str(tmp_path / "data"))
    summary = run_local(pipeline_root=str(tmp_path / "root"), task="model_garden", task_config=json.dumps(config),
                        train_steps=30, steps_per_loop=10, checkpoint_interval=10,
                        export_dir=str(tmp_path / "serving"))
    # Every checkpoint evaluated once; the best by the experiment's metric (accuracy, higher).
    assert summary.final_step == 30 and summary.evaluated == 3 and summary.skipped == 0 and not summary.never_seen
    records = eval_records.EvalRecords(eval_records.eval_dir(summary.model_dir, "validation"))
    accuracy = {step: records.read(step)["metrics"]["accuracy"] for step in (10, 20, 30)}
    assert summary.best_metrics["accuracy"] == pytest.approx(max(accuracy.values()))
    assert accuracy[summary.best_step] == max(accuracy.values())
    assert os.path.exists(f"{summary.model_dir}/params.yaml")
    # The export is committed and serves: Model Garden's classification module, uint8 images in.
    assert summary.exported and summary.export_path == str(tmp_path / "serving" / str(summary.best_step))
    assert json.load(open(f"{summary.saved_model}/{export.EXPORT_INFO}"))["step"] == summary.best_step
    serve = tf.saved_model.load(summary.export_path).signatures["serving_default"]
    images = tf.cast(tf.random.stateless_uniform([3, IMAGE_SIZE, IMAGE_SIZE, 3], [3, 4], maxval=256, dtype=tf.int32),
                     tf.uint8)
    out = serve(inputs=images)
    assert out["probs"].shape == (3, NUM_CLASSES)
    np.testing.assert_allclose(out["probs"].numpy().sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("backend,resources,expected", [
    ("gke", "cpu=8,memory=32G,gpu=l4:1", "nvidia-l4"),
    ("vertex", "tpu=v5e:2x2", "TPU_V5_LITEPOD"),
])
def test_a_model_garden_experiment_compiles_to_an_accelerator_pipeline(backend, resources, expected, tmp_path):
    from tfpipe.pipelines import cli, submit

    package = tmp_path / "mg.yaml"
    experiment = json.dumps({"experiment": "resnet_imagenet", "params_override": {"task": {"train_data": {
        "input_path": "gs://my-bucket/imagenet/train*"}}}})
    assert cli.main(["compile", "--backend", backend, "--image", "registry.example.com/ml/tfpipe-mg:0.1.0",
                     "--task", "model_garden", "--task-config", experiment,
                     "--train-resources", resources, "-o", str(package)]) == 0
    assert expected in package.read_text()
    spec = submit.load_pipeline_package(package)[0]
    defaults = {name: value.get("defaultValue") for name, value in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults["task"] == "model_garden" and json.loads(defaults["task_config"]) == json.loads(experiment)
    values = submit.parameters_from_text(spec, {"train_steps": "90000"})  # The experiment stays the default.
    assert submit.check_parameters(spec, values, name="parameter_values") == values


@pytest.mark.timeout(900)
def test_tiny_resnet_experiment_trains_identically_twice(model_garden, tmp_path):
    """The experiment's seed, under tfpipe's op determinism: two runs of one config give the same checkpoint."""
    import subprocess
    import sys

    from tests.support.model_garden_data import tiny_resnet_config

    config = json.dumps(tiny_resnet_config(str(tmp_path / "data")))
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-m", "tfpipe.components.train", "--task=model_garden",
                        f"--task_config={config}", f"--model_dir={tmp_path / run}", "--train_steps=10",
                        "--steps_per_loop=5", "--checkpoint_interval=10"], check=True, timeout=600)
    names = [name for name, _ in tf.train.list_variables(str(tmp_path / "a" / "ckpt-10")) if "VARIABLE_VALUE" in name]
    assert len(names) > 100  # The backbone, the head and their optimizer slots.
    _assert_same_variables(str(tmp_path / "b" / "ckpt-10"), str(tmp_path / "a" / "ckpt-10"), tuple(names))


def test_data_artifacts_become_the_experiments_input_paths(model_garden, tmp_path):
    from tfpipe.components.tasks import DataInputs, DataRef
    from tests.support.model_garden_data import tiny_resnet_config
    from tfpipe.components.tasks import model_garden as mg_task

    config = tiny_resnet_config(str(tmp_path / "data"))
    for key in ("train_data", "validation_data"):
        del config["params_override"]["task"][key]["input_path"]
    (tmp_path / "train").mkdir()
    os.rename(tmp_path / "data" / "train-00000.tfrecord", tmp_path / "train" / "part-0")
    built = mg_task.build(config, data=DataInputs(train=DataRef(uri=str(tmp_path / "train"), metadata={}),
                                                  eval=DataRef(uri=str(tmp_path / "data" / "valid-*"), metadata={})))
    params = built.trainer.config
    assert params.task.train_data.input_path == f"{tmp_path}/train/*"
    assert params.task.validation_data.input_path == f"{tmp_path}/data/valid-*"
    # The run records the experiment's own path (resnet_imagenet's default), not where this run found its data.
    assert built.config["params.task.train_data.input_path"].startswith("imagenet-2012-tfrecord/")
