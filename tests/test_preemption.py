"""Preemption (SIGTERM → save at the current step, exit 143, resume exactly) and divergence recovery."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tests.support.tiny_runners import TinyRunner, checkpoint_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_worker(model_dir, **flags):
    args = [sys.executable, "-m", "tests.support.preempt_worker", f"--model_dir={model_dir}"]
    args += [f"--{k}={v}" for k, v in flags.items()]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def final_weights(model_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("model/"))
    return {n: reader.get_tensor(n) for n in names}


def test_sigterm_saves_at_current_step_and_resume_matches_uninterrupted_run(tmp_path):
    straight = str(tmp_path / "straight")
    proc = start_worker(straight, steps=200)
    assert proc.wait(timeout=120) == 0

    preempted = str(tmp_path / "preempted")
    survived = 0
    for _ in range(2):  # Preempt twice, then let it finish.
        before = max(checkpoint_steps(preempted), default=0)
        proc = start_worker(preempted, steps=200, loop_sleep=0.05)
        deadline = time.monotonic() + 60  # Wait for an interval checkpoint written by this process.
        while time.monotonic() < deadline and not any(s > before and s % 50 == 0 for s in checkpoint_steps(preempted)):
            time.sleep(0.05)
        time.sleep(0.12)  # Land between interval checkpoints.
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 143, out
        assert "preempted by SIGTERM: checkpoint saved at step" in out
        saved = max(checkpoint_steps(preempted))
        assert saved % 5 == 0 and saved < 200  # A loop boundary, not an interval multiple.
        survived += 1
    steps_at_preemption = [s for s in checkpoint_steps(preempted) if s % 50]
    proc = start_worker(preempted, steps=200)
    assert proc.wait(timeout=120) == 0
    assert max(checkpoint_steps(preempted)) == 200

    a, b = final_weights(straight), final_weights(preempted)
    assert a.keys() == b.keys() and a
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    print(f"preemptions survived: {survived}; off-interval saves at {steps_at_preemption}; max weight diff {diff}")
    assert diff == 0.0


# A child whose stdout pipe is full (the parent is not reading), so its print blocks in a write when SIGTERM comes.
_PRINTS_INTO_A_FULL_PIPE = """
import sys
from tfpipe.controller_core import preemption
with preemption.TerminationWatcher() as watcher:
    print("filling", file=sys.stderr, flush=True)
    for _ in range(100):
        print("x" * 10_000, flush=True)
sys.exit(0 if watcher.requested else 3)
"""


def test_sigterm_during_a_blocked_print_is_recorded_not_a_crash():
    # The handler runs inside the interrupted buffered write: it must not print through the same buffer again
    # ("RuntimeError: reentrant call inside <_io.BufferedWriter name='<stdout>'>" killed a preempted trainer).
    proc = subprocess.Popen([sys.executable, "-c", _PRINTS_INTO_A_FULL_PIPE], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    while proc.stderr.readline().strip() != b"filling":  # Imports done; its stdout fills up 64 KiB in.
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"received SIGTERM: saving a checkpoint at the end of this train loop" in err
    # The program ran to its end. (CPython itself may drop part of the interrupted write, although the handler no
    # longer touches stdout: 4,096 bytes of one 10,000-byte line here; tfpipe's own lines are short.)
    assert len(out.splitlines()) == 100


def test_no_watcher_means_default_sigterm(tmp_path):
    # Without a TerminationWatcher, SIGTERM keeps its default meaning (the process dies at once).
    proc = subprocess.Popen([sys.executable, "-c", "import time, tfpipe.controller_core; time.sleep(60)"], cwd=ROOT)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM


class DivergingRunner(TinyRunner):
    """Poisons the weights with NaN at the end of given train-loop calls."""

    def __init__(self, poison_calls):
        super().__init__()
        self.calls = 0
        self.poison_calls = set(poison_calls)

    def train_loop_end(self):
        self.calls += 1
        if self.calls in self.poison_calls:
            self.model.dense.kernel.assign(self.model.dense.kernel * float("nan"))
            return {"loss": tf.constant(float("nan"))}
        return super().train_loop_end()


def make(tmp_path, runner, **action_kwargs):
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path), max_to_keep=None,
                                         step_counter=runner.global_step, checkpoint_interval=4)
    action = orbit.actions.RecoverFromDivergence(manager, runner.global_step, **action_kwargs)
    controller = orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=2,
                                  checkpoint_manager=manager, train_actions=[action])
    return controller, action, manager


def all_checkpoints_finite(directory):
    for step in checkpoint_steps(directory):
        reader = tf.train.load_checkpoint(f"{directory}/ckpt-{step}")
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.all(np.isfinite(value)), (step, name)


def test_transient_divergence_rolls_back_and_finishes(tmp_path, capsys):
    runner = DivergingRunner(poison_calls={4})  # The 4th loop ends at step 8 with NaN weights.
    controller, action, _ = make(tmp_path, runner)
    controller.train(12)
    assert action.recoveries == 1 and int(runner.global_step.numpy()) == 12
    assert np.all(np.isfinite(runner.model.dense.kernel.numpy()))
    assert "diverged | rolled back to" in capsys.readouterr().out
    all_checkpoints_finite(str(tmp_path))  # The NaN state was never checkpointed.


def test_persistent_divergence_fails_with_step_and_loss(tmp_path):
    runner = DivergingRunner(poison_calls=set(range(3, 100)))
    controller, action, _ = make(tmp_path, runner, max_recoveries=2)
    with pytest.raises(orbit.actions.DivergenceError,
                       match=r"Training diverged at step 6: loss = nan \(after 2 rollback\(s\)\)"):
        controller.train(20)
    all_checkpoints_finite(str(tmp_path))


def test_loss_upper_bound_and_no_checkpoint(tmp_path):
    action = orbit.actions.RecoverFromDivergence(
        tf.train.CheckpointManager(tf.train.Checkpoint(), str(tmp_path), 1), tf.Variable(3), loss_upper_bound=10.0)
    action({"loss": 9.0})
    with pytest.raises(orbit.actions.DivergenceError, match=r"at step 3: loss = 11.0 \(no checkpoint to roll back to\)"):
        action({"loss": 11.0})
    with pytest.raises(ValueError, match=r"`max_recoveries` must be a non-negative integer, got -1"):
        orbit.actions.RecoverFromDivergence(None, None, max_recoveries=-1)
    assert math.isinf(float("inf")) and action.diverged(float("inf"))


# ---------------------------------------------- SIGTERM in evaluation and export


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from tfpipe.components.train import runtime as train

    model_dir = str(tmp_path_factory.mktemp("digits"))
    train.run(task="digits", model_dir=model_dir, train_steps=200, steps_per_loop=20, checkpoint_interval=20)
    return model_dir


def sigterm_at(target, call_number, component, *flags):
    return subprocess.run(
        [sys.executable, "-m", "tests.support.sigterm_at", target, str(call_number), component, *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def leftovers(directory):
    return [os.path.join(r, n) for r, ds, fs in os.walk(directory) for n in ds + fs if ".tmp-" in n]


def test_sigterm_during_continuous_eval_leaves_whole_records_and_resumes(digits_run):
    import json

    from tfpipe.controller_core import eval_records

    flags = ["--task=digits", f"--model_dir={digits_run}", "--eval_name=term", "--poll_interval=0.1",
             "--idle_timeout=30"]
    # The 4th record write is interrupted: three whole records, no fourth, no temporary left behind.
    out = sigterm_at("tfpipe.controller_core.run_dir:write_text_atomic", 7, "tfpipe.components.continuous_eval", *flags)
    assert out.returncode == 143, out.stdout[-2000:] + out.stderr[-2000:]
    records = eval_records.EvalRecords(eval_records.eval_dir(digits_run, "term"))
    done = records.steps()
    assert done and all(json.load(open(records.path(s)))["step"] == s for s in done)
    assert not leftovers(records.directory)
    mtimes = {s: os.path.getmtime(records.path(s)) for s in done}
    rerun = subprocess.run([sys.executable, "-m", "tfpipe.components.continuous_eval", *flags], cwd=ROOT,
                           capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert records.steps() == checkpoint_steps(digits_run) == [120, 140, 160, 180, 200]  # max_to_keep=5
    assert {s: os.path.getmtime(records.path(s)) for s in done} == mtimes  # Never rewritten.


def test_sigterm_during_export_commit_leaves_no_loadable_partial_export(digits_run, tmp_path):
    out_path = str(tmp_path / "model")
    flags = ["--task=digits", f"--model_dir={digits_run}", f"--output_path={out_path}", "--checkpoint=latest"]
    # Interrupted while copying the committed files: saved_model.pb (always copied last) is not there.
    out = sigterm_at("tensorflow.io.gfile:copy", 2, "tfpipe.components.export", *flags)
    assert out.returncode == 143, out.stdout[-2000:] + out.stderr[-2000:]
    assert not os.path.exists(os.path.join(out_path, "saved_model.pb"))
    assert not leftovers(tmp_path)  # The temporary SavedModel was removed.
    rerun = subprocess.run([sys.executable, "-m", "tfpipe.components.export", *flags], cwd=ROOT,
                           capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    tf.saved_model.load(out_path)  # The retried export completed the commit.


def test_train_component_preempted_resumes_to_identical_weights(tmp_path):
    flags = ["--task=digits", "--train_steps=300", "--steps_per_loop=10", "--checkpoint_interval=50"]
    straight = str(tmp_path / "straight")
    run = subprocess.run([sys.executable, "-m", "tfpipe.components.train", f"--model_dir={straight}", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]

    preempted = str(tmp_path / "preempted")
    out = sigterm_at("tensorflow.python.checkpoint.checkpoint_management:CheckpointManager.save", 3,
                     "tfpipe.components.train", f"--model_dir={preempted}", *flags)
    assert out.returncode == 143, out.stdout[-2000:] + out.stderr[-2000:]
    # The signal arrived as the step-150 save began: that save completed, and the loop stopped right after it.
    assert checkpoint_steps(preempted) == [50, 100, 150]
    assert "preempted by SIGTERM: checkpoint saved at step 150" in out.stdout
    assert not os.path.exists(f"{preempted}/training_complete.json")
    run = subprocess.run([sys.executable, "-m", "tfpipe.components.train", f"--model_dir={preempted}", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "restored model from" in run.stdout and "ckpt-150" in run.stdout

    a, b = final_weights(straight), final_weights(preempted)
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    print(f"train component: preempted at step 150, resumed to 300; max weight diff {diff}")
    assert a.keys() == b.keys() and diff == 0.0
