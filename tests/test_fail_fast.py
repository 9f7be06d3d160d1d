"""Fail fast: one batch through the task before any work, Keras 3 named, and no retry of a failure that repeats."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import attempts
from tfpipe.components.check_inputs import runtime as check_inputs
from tfpipe.components.common import probe
from tfpipe.components import tasks
from tfpipe.components.train import runtime as train
from tfpipe.pipelines import local_run

MISMATCHED = "tests.support.shape_tasks:mismatched"
MISMATCH = (r"task 'mismatched': one train batch \(float32\[4,2\], int64\[4\]\) does not fit the model: "
            r"ValueError: .*expected shape=\(None, 3\), found shape=\(4, 2\)")


def test_check_inputs_pushes_one_batch_and_names_the_task_and_tensors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        check_inputs.run(task=MISMATCHED, model_dir=str(tmp_path / "run"))
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert re.fullmatch("check_inputs: " + MISMATCH, line), line
    assert not (tmp_path / "run").exists()
    # The same task with data that fits passes, and so does digits.
    assert check_inputs.run(task=MISMATCHED, task_config='{"features": 3}', model_dir=str(tmp_path / "ok")) == (
        "accuracy", "higher")
    assert check_inputs.run(task="digits", model_dir=str(tmp_path / "digits")) == ("accuracy", "higher")


def test_the_probe_updates_no_variable():
    task = tasks.build_task("digits", {})
    task.model(tf.zeros([1, 64]))
    before = [v.numpy().copy() for v in task.model.variables]
    probe.probe(task)
    assert int(task.optimizer.iterations.numpy()) == 0 and not task.optimizer.variables[1:]
    for old, new in zip(before, task.model.variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_the_serving_signature_is_probed_too():
    task = tasks.build_task(MISMATCHED, {"features": 3})
    task.serving_signature = tf.function(lambda x: {"y": task.model(x)},
                                         input_signature=[tf.TensorSpec([None, 5], tf.float32)])
    with pytest.raises(checks.InputError, match=r"task 'mismatched': the serving signature refuses inputs "
                                                r"\(float32\[4,5\]\): ValueError"):
        probe.probe(task)
    # Zeros are made up for an unknown batch dimension only: an input of any height and width (Model Garden's
    # image serving) is not guessed at, so a made-up size is never refused as if it were the task's mistake.
    calls = []
    task.serving_signature = tf.function(lambda x: calls.append(x.shape) or {"y": tf.reduce_sum(x)},
                                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    task.train_dataset = task.eval_dataset = None
    probe.probe(task)
    assert calls == []
    task.serving_signature = tf.function(lambda x: calls.append(x.shape) or {"y": tf.reduce_sum(x)},
                                         input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.uint8)])
    probe.probe(task)
    assert len(calls) == 1  # Traced: called with zeros of a made-up batch.


def test_the_mismatch_fails_in_check_inputs_under_kfp_local_and_train_never_runs(tmp_path, capfd):
    with pytest.raises(local_run.LocalRunError, match=r"failed at step check-inputs"):
        local_run.run_local(pipeline_root=str(tmp_path / "root"), task=MISMATCHED, model_dir=str(tmp_path / "run"),
                            train_steps=10)
    out = capfd.readouterr()
    assert len([line for line in (out.out + out.err).splitlines() if "does not fit the model" in line]) == 1
    assert not (tmp_path / "run").exists()  # Train never started: nothing written.


def test_the_train_entry_point_says_it_in_one_line_with_status_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", f"--task={MISMATCHED}", f"--model_dir={tmp_path}/run",
         "--train_steps=4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train: task 'mismatched': one train batch") and "Traceback" not in done.stderr


def test_a_retry_of_a_repeating_failure_before_the_first_checkpoint_fails_at_once(tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    values = dict(task="tests.support.shape_tasks:breaks_at_step_3", model_dir=model_dir, train_steps=10,
                  steps_per_loop=1, checkpoint_interval=100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="malformed record"):
        train.run(**values)
    record = json.loads((tmp_path / "run" / "failures" / "train.json").read_text())
    assert record["deterministic"] and record["progress"] is None and record["attempt"] == 1
    assert record["error"].startswith("InvalidArgumentError: ") and "malformed record" in record["error"] and set(record) == {
        "step", "inputs", "attempt", "error", "deterministic", "progress", "time"}  # No input values stored.
    # The retry (same inputs) refuses before building anything, naming the first attempt's error.
    with pytest.raises(attempts.RepeatedFailureError, match=r"not retrying: attempt 1 failed with the same inputs "
                                                            r"before the first checkpoint.*malformed record"):
        train.run(**values)
    # Other inputs are not a retry of these: they run (and here train).
    assert train.run(**{**values, "train_steps": 2}).final_step == 2
    assert not (tmp_path / "run" / "failures" / "train.json").exists()  # A success clears the record.


def test_a_bad_input_is_not_recorded(tmp_path):
    with pytest.raises(checks.InputError, match="does not fit the model"):
        train.run(task=MISMATCHED, model_dir=str(tmp_path / "run"), train_steps=4)
    assert not (tmp_path / "run" / "failures").exists()


def test_a_retry_after_a_transient_failure_says_so_and_runs(tmp_path, capsys, monkeypatch):
    model_dir = str(tmp_path / "run")
    values = dict(task=MISMATCHED, task_config='{"features": 3}', model_dir=model_dir, train_steps=2,
                  steps_per_loop=1)
    inputs = vars(train.INTERFACE.check(values, fill_defaults=True))
    os.makedirs(f"{model_dir}/failures")
    with open(attempts.record_path(model_dir, "train"), "w") as f:
        json.dump({"step": "train", "inputs": attempts.inputs_fingerprint(inputs), "attempt": 1,
                   "error": "UnavailableError: storage is down", "deterministic": False, "progress": None,
                   "time": __import__("time").time()}, f)
    monkeypatch.setenv(attempts.RETRIES_ENV, "3")
    assert train.run(**values).final_step == 2
    assert "train: retrying (1/3) after: UnavailableError: storage is down" in capsys.readouterr().out
    assert not os.path.exists(attempts.record_path(model_dir, "train"))  # Cleared by the success.


def test_a_keras3_trainer_gets_one_line_naming_keras3_and_the_fix():
    with pytest.raises(checks.InputError) as raised:
        tasks.build_task("tests.support.shape_tasks:keras3_trainer", {})
    message = str(raised.value)
    assert "\n" not in message
    assert "is a Keras 3 object (keras." in message and "tf_keras" in message and "TF_USE_LEGACY_KERAS=1" in message


def test_the_controller_names_keras3_for_a_keras3_step_counter():
    import keras

    import tfpipe.controller_core as orbit

    with pytest.raises(ValueError, match=r"`global_step` is a Keras 3 object .*TF_USE_LEGACY_KERAS=1"):
        orbit.Controller(global_step=keras.Variable(0, dtype="int64"), trainer=None, evaluator=object(),
                         steps_per_loop=1)
