"""Mixed precision and XLA in the components: training, preemption and exact resume, evaluation and export.

mixed_float16 and mixed_bfloat16 both run on CPU (slowly; the point here is correctness): a run in each precision is
preempted (SIGTERM at a checkpoint save, exit 143), resumes, and ends with exactly the state of an uninterrupted run
(every variable, the loss scale included: maximum difference 0). Its checkpoints are evaluated and exported by the
components in their own precision and in float32, and the SavedModels take and return float32.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.evaluate import runtime as evaluate
from tfpipe.components.export import runtime as export
from tfpipe.components.train import runtime as train
from tests.support.tiny_runners import checkpoint_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
FLAGS = ["--task=digits", "--train_steps=120", "--steps_per_loop=10", "--checkpoint_interval=40"]
LOSS_SCALE = "loss_scale_optimizer/loss_scale/current_loss_scale/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_state(path):
    """Every variable of a checkpoint (weights, optimizer slots and step, the loss scale), by name."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("save_counter", "train_iterator", "_CHECKPOINTABLE"))}


def train_process(model_dir, *flags, preempt_at_save=None):
    command = [sys.executable, "-m", "tfpipe.components.train", f"--model_dir={model_dir}", *FLAGS, *flags]
    if preempt_at_save is not None:
        command = [sys.executable, "-m", "tests.support.sigterm_at",
                   "tensorflow.python.checkpoint.checkpoint_management:CheckpointManager.save", str(preempt_at_save),
                   "tfpipe.components.train", f"--model_dir={model_dir}", *FLAGS, *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module", params=[("mixed_float16", False), ("mixed_bfloat16", True)],
                ids=["mixed_float16", "mixed_bfloat16-xla"])
def mixed_run(request, tmp_path_factory):
    """A straight run and a preempted-then-resumed run in one precision (the second with XLA)."""
    precision, jit = request.param
    flags = [f"--precision={precision}", f"--jit_compile={str(jit).lower()}"]
    root = tmp_path_factory.mktemp(precision)
    straight, preempted = str(root / "straight"), str(root / "preempted")
    run = train_process(straight, *flags)
    assert run.returncode == 0, run.stderr[-3000:]

    out = train_process(preempted, *flags, preempt_at_save=2)
    assert out.returncode == 143, out.stdout[-2000:] + out.stderr[-2000:]
    assert checkpoint_steps(preempted) == [40, 80]
    assert "preempted by SIGTERM: checkpoint saved at step 80" in out.stdout
    resumed = train_process(preempted, *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "restored model from" in resumed.stdout and "ckpt-80" in resumed.stdout
    return precision, straight, preempted


def test_a_preempted_mixed_precision_run_resumes_exactly(mixed_run):
    precision, straight, preempted = mixed_run
    a, b = checkpoint_state(f"{straight}/ckpt-120"), checkpoint_state(f"{preempted}/ckpt-120")
    assert a.keys() == b.keys() and any(k.startswith("model/") for k in a)
    assert (LOSS_SCALE in a) == (precision == "mixed_float16")  # Loss scaling is float16's alone.
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    print(f"{precision}: preempted at step 80, resumed to 120; {len(a)} variables; max difference {diff}")
    assert diff == 0.0
    # The model's variables are float32 in every precision.
    assert {a[k].dtype for k in a if k.startswith("model/")} == {np.dtype("float32")}


def test_mixed_runs_train_as_well_as_float32(mixed_run, tmp_path):
    precision, straight, _ = mixed_run
    reference = str(tmp_path / "float32")
    assert train_process(reference).returncode == 0
    mixed = evaluate.run(task="digits", model_dir=straight, precision=precision).record["metrics"]
    float32 = evaluate.run(task="digits", model_dir=reference).record["metrics"]
    print(f"{precision}: eval loss {mixed['loss']:.4f}, accuracy {mixed['accuracy']:.4f}; float32: loss "
          f"{float32['loss']:.4f}, accuracy {float32['accuracy']:.4f}")
    assert abs(mixed["loss"] - float32["loss"]) < 0.05 and abs(mixed["accuracy"] - float32["accuracy"]) < 0.03
    # The float32 run's checkpoints hold no loss scale: evaluating and exporting them in 16 bits creates none (the
    # checked restore would refuse a variable the checkpoint lacks).
    crossed = evaluate.run(task="digits", model_dir=reference, eval_name="mixed", precision="mixed_float16")
    assert abs(crossed.record["metrics"]["accuracy"] - float32["accuracy"]) < 0.03
    export.run(task="digits", model_dir=reference, output_path=str(tmp_path / "m16"), checkpoint="latest",
               precision="mixed_float16")


@pytest.mark.parametrize("eval_precision", ["own", "float32"])
def test_a_mixed_run_is_evaluated_and_exported_to_float32_savedmodels(mixed_run, eval_precision, tmp_path):
    precision, straight, _ = mixed_run
    used = precision if eval_precision == "own" else "float32"
    result = evaluate.run(task="digits", model_dir=straight, eval_name=f"e-{used}", precision=used,
                          jit_compile=True)
    assert result.step == 120 and 0.8 < result.record["metrics"]["accuracy"] <= 1.0

    exported = export.run(task="digits", model_dir=straight, output_path=str(tmp_path / "model"),
                          checkpoint="latest", precision=used)
    signature = tf.saved_model.load(exported.path).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert {name: spec.dtype for name, spec in inputs.items()} == {"image": tf.float32}
    assert signature.structured_outputs["probabilities"].dtype == tf.float32
    images = tf.random.stateless_uniform([16, 64], seed=[1, 2])
    probabilities = signature(image=images)["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=2e-2)
    # The float32 view of the same checkpoint predicts the same classes, up to 16-bit rounding.
    reference = export.run(task="digits", model_dir=straight, output_path=str(tmp_path / "f32"), checkpoint="latest")
    expected = tf.saved_model.load(reference.path).signatures["serving_default"](image=images)["probabilities"]
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=3e-2)


def test_training_in_another_precision_than_the_run_is_refused(mixed_run):
    precision, straight, _ = mixed_run
    before = sorted(os.listdir(straight))
    with pytest.raises(checks.InputError, match=rf'precision: "{precision}" there, "float32" here'):
        train.run(task="digits", model_dir=straight, train_steps=200)
    assert sorted(os.listdir(straight)) == before


def test_a_task_with_its_own_trainer_keeps_control_of_its_precision(tmp_path):
    """The policy is not forced on a task's own trainer: tfpipe refuses, before any work, to pretend it applies."""
    model_dir = tmp_path / "custom"
    for name, value in (("precision", "mixed_float16"), ("jit_compile", True)):
        with pytest.raises(checks.InputError, match=rf"`{name}` .* apply to tfpipe's generic Keras trainer, but "
                                                    r"task 'custom' brings its own trainer"):
            train.run(task="tests.support.custom_task:build", model_dir=str(model_dir), train_steps=2,
                      **{name: value})
        assert not model_dir.exists()
    # float32 (the default) sets no policy: the task's trainer runs as it is.
    train.run(task="tests.support.custom_task:build", model_dir=str(model_dir), train_steps=4, steps_per_loop=2)
    assert checkpoint_steps(str(model_dir)) == [4]
    with pytest.raises(checks.InputError, match=r"brings its own evaluator"):
        evaluate.run(task="tests.support.custom_task:build", model_dir=str(model_dir), precision="mixed_bfloat16")


def test_the_policy_does_not_leak_out_of_the_step(mixed_run):
    import tf_keras

    assert tf_keras.mixed_precision.global_policy().name == "float32"
