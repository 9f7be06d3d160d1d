"""The README's examples, run as written: only bucket paths and the registry placeholder are filled in, and the
datasets the controller example assumes are made here."""

import pathlib
import re
import shlex

import numpy as np
import pytest
import tensorflow as tf
import yaml
from kfp import compiler

from tfpipe.pipelines import cli

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


def test_the_own_dag_example_compiles(tmp_path):
    scope: dict = {}
    exec(compile(_block_with("python", "export_if_passed(passed="), "README.md", "exec"), scope)
    compiler.Compiler().compile(scope["my_training"], str(tmp_path / "my_training.yaml"))
    assert "export-if-passed" in (tmp_path / "my_training.yaml").read_text()


def test_the_data_in_model_out_example_compiles_with_its_artifact_edges(tmp_path):
    scope: dict = {}
    exec(compile(_block_with("python", "def my_data_training("), "README.md", "exec"), scope)
    compiler.Compiler().compile(scope["my_data_training"], str(tmp_path / "p.yaml"))
    tasks = yaml.safe_load((tmp_path / "p.yaml").read_text())["root"]["dag"]["tasks"]
    for step in ("train", "continuous-eval"):
        assert tasks[step]["inputs"]["artifacts"]["train_data"]["taskOutputArtifact"]["producerTask"] == "prepare"
    assert tasks["deploy"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "export-if-passed"


@pytest.mark.parametrize("line", [
    line for block in _blocks("sh") for line in block.replace("\\\n", " ").splitlines()
    if line.startswith("tfpipe compile ")
])
def test_every_compile_command_compiles(line, tmp_path):
    argv = shlex.split(line.split("#")[0].replace("REGISTRY", "registry.example.com/ml"))[1:]  # Its placeholder.
    output = tmp_path / "p.yaml"
    argv[argv.index("-o") + 1] = str(output)
    assert cli.main(argv) == 0
    assert output.stat().st_size > 0
