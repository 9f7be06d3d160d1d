"""The README's examples, run as written: only bucket paths and the registry placeholder are filled in, and the
datasets the controller example assumes are made here."""

import pathlib
import json
import re
import shlex

import numpy as np
import pytest
import tensorflow as tf
import yaml
from kfp import compiler

from tfpipe.pipelines import cli, dag

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(language: str) -> list:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def _block_with(language: str, text: str) -> str:
    (block,) = [b for b in _blocks(language) if text in b]
    return block


def test_the_controller_example_trains_evaluates_and_checkpoints(tmp_path):
    code = _block_with("python", "orbit.Controller(").replace("gs://my-bucket", str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)  # Learnable: the sign of the first feature.
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    scope = {"train_ds": data.repeat(), "eval_ds": data}
    exec(compile(code, "README.md", "exec"), scope)
    assert int(scope["runner"].optimizer.iterations.numpy()) == 1000
    assert tf.train.latest_checkpoint(str(tmp_path / "runs" / "1")).endswith("ckpt-1000")
    assert list((tmp_path / "runs" / "1" / "eval").glob("events.out.tfevents.*"))
    assert float(scope["runner"].accuracy.result()) > 0.9


def _own_dag(backend: str = "gke") -> dict:
    scope: dict = {}
    code = _block_with("python", "export_if_passed(passed=").replace('BACKEND = "gke"', f'BACKEND = "{backend}"')
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def test_the_data_in_model_out_example_compiles_with_its_artifact_edges(tmp_path):
    scope: dict = {}
    exec(compile(_block_with("python", "def my_data_training("), "README.md", "exec"), scope)
    compiler.Compiler().compile(scope["my_data_training"], str(tmp_path / "p.yaml"))
    tasks = yaml.safe_load((tmp_path / "p.yaml").read_text())["root"]["dag"]["tasks"]
    for step in ("train", "continuous-eval"):
        assert tasks[step]["inputs"]["artifacts"]["train_data"]["taskOutputArtifact"]["producerTask"] == "prepare"
    assert tasks["deploy"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "export-if-passed"


def _compiled(pipeline, path) -> dict:
    compiler.Compiler().compile(pipeline, str(path))
    return list(yaml.safe_load_all(path.read_text()))


def test_the_own_dag_example_compiles_for_gke_with_the_packaged_pipelines_guards(tmp_path):
    spec, platform = _compiled(_own_dag("gke")["my_training"], tmp_path / "gke.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"resolve-model-dir", "check-inputs", "train", "continuous-eval", "continuous-eval-2",
                          "export-if-passed"}
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == dag.SETTINGS["train"].retry.num_retries
    assert "retryPolicy" not in tasks["check-inputs"] and tasks["check-inputs"]["cachingOptions"] == {}
    assert tasks["train"]["cachingOptions"] == {} and tasks["continuous-eval"]["cachingOptions"] == {}
    assert set(tasks["train"]["dependentTasks"]) == {"check-inputs", "resolve-model-dir"}
    assert "train" not in tasks["continuous-eval"]["dependentTasks"]  # Concurrent on a cluster.
    assert {"train", "continuous-eval"} <= set(tasks["continuous-eval-2"]["dependentTasks"])  # The catch-up.
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert {"name": "TFPIPE_RETRIES", "value": "3"} in train["env"]
    selectors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]["nodeSelector"]
    assert selectors["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-spot": "true"}


def test_the_own_dag_example_compiles_for_vertex_with_spot_through_a_custom_job(tmp_path):
    (spec,) = _compiled(_own_dag("vertex")["my_training"], tmp_path / "vertex.yaml")
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert "google_cloud_pipeline_components" in " ".join(train["command"] + train["args"])
    job = json.dumps(spec["components"]["comp-train"])
    assert "SPOT" in job and "NVIDIA_L4" in job and "g2-standard" in job


@pytest.mark.parametrize("line", [
    line for block in _blocks("sh") for line in block.replace("\\\n", " ").splitlines()
    if line.startswith("tfpipe compile ")
])
def test_every_compile_command_compiles(line, tmp_path):
    # Its placeholders: the registry, and the experiment file the Model Garden section shows.
    line = line.replace("REGISTRY", "registry.example.com/ml").replace(
        "$(cat my_experiment.json)", '{\\"experiment\\": \\"resnet_imagenet\\"}')
    argv = shlex.split(line.split("#")[0])[1:]
    output = tmp_path / "p.yaml"
    argv[argv.index("-o") + 1] = str(output)
    assert cli.main(argv) == 0
    assert output.stat().st_size > 0
