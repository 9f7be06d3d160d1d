"""`python -m tfpipe.components.<name>`: the components' entry points end to end with model_dir on gs:// (GCS emulator)."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tfpipe.controller_core import eval_records, run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry_point(name, env, *flags, timeout=180, status=0):
    out = subprocess.run(
        [sys.executable, "-m", f"tfpipe.components.{name}", *flags],
        cwd=ROOT, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == status, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout if status == 0 else out.stderr


@pytest.mark.timeout(600)  # Four step processes one after another, on a shared 2-core machine.
def test_four_entry_points_on_gcs(gcs_emulator, gcs_bucket, tmp_path):
    model_dir = f"{gcs_bucket}/runs/1"
    task = ["--task=digits", f"--model_dir={model_dir}"]
    log = entry_point("train", gcs_emulator.env, *task, "--train_steps=200", "--steps_per_loop=50",
                      "--checkpoint_interval=100")
    assert "train | done | step: 200" in log
    log = entry_point("continuous_eval", gcs_emulator.env, *task, "--best_metric=accuracy", "--best_mode=higher",
                      "--poll_interval=0.2", "--idle_timeout=60")
    assert "training complete at step 200 | evaluated: 2" in log
    best = eval_records.read_best_record(eval_records.eval_dir(model_dir, "validation"))
    step = best["step"]
    assert best["best_checkpoint"] == f"{model_dir}/eval/validation/best/ckpt-{step}"
    assert best["metrics"]["accuracy"] >= 0.9
    log = entry_point("evaluate", gcs_emulator.env, *task, "--checkpoint=best")
    assert f"evaluate | done | step: {step}" in log
    log = entry_point("export", gcs_emulator.env, *task, f"--output_path={tmp_path}/model",
                      f"--export_dir={gcs_bucket}/serving", '--thresholds={"accuracy": ">= 0.9"}')
    result = json.loads(log.split("export | done | ", 1)[1].splitlines()[0])
    assert result["step"] == step and result["export_path"] == f"{gcs_bucket}/serving/{step}"
    # A missed gate is a refusal, not a crash: one line naming the metric, its value and the threshold; status 1.
    err = entry_point("export", gcs_emulator.env, *task, f"--output_path={tmp_path}/missed",
                      f"--export_dir={gcs_bucket}/missed", '--thresholds={"loss": "< 0"}', status=1)
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("export: ")]
    assert f"Not exporting step {step}: metric 'loss' is " in line and "which does not meet its threshold < 0" in line
    assert not os.path.exists(tmp_path / "missed")
    assert not list(gcs_emulator.client().list_blobs(gcs_bucket[len("gs://"):], prefix="missed/"))

    # What landed in the bucket, read back through TF's own gs:// client.
    assert tf.io.gfile.exists(f"{model_dir}/ckpt-200.index")
    assert run_dir.read_json(f"{model_dir}/{run_dir.TRAINING_COMPLETE}")["step"] == 200
    assert tf.io.gfile.exists(f"{model_dir}/eval/validation/report.html")
    assert tf.io.gfile.exists(f"{gcs_bucket}/serving/{step}/saved_model.pb")
    # ...and through google-cloud-storage.
    names = {b.name for b in gcs_emulator.client().list_blobs(gcs_bucket[len("gs://"):], prefix=f"serving/{step}/")}
    assert f"serving/{step}/saved_model.pb" in names and f"serving/{step}/variables/variables.index" in names


@pytest.mark.parametrize("name, flags, says", [
    ("train", ["--train_steps=-5"], "`train_steps` must be a positive integer (at most 9007199254740992), got -5"),
    # The thresholds' own check (components/common/thresholds.py) raises the same InputError as tfpipe/checks.py's.
    ("export", ["--output_path=/tmp/unused", '--thresholds={"accuracy": "big"}'],
     "`thresholds['accuracy']` must be a comparison such as '>= 0.9' or '< 0.5'"),
])
def test_entry_point_bad_input_is_one_line_and_exit_2(tmp_path, name, flags, says):
    out = subprocess.run(
        [sys.executable, "-m", f"tfpipe.components.{name}", "--task=digits", f"--model_dir={tmp_path}/r", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith(f"{name}: ")]
    assert says in line
    assert not os.path.exists(tmp_path / "r")


def test_a_missing_extra_is_one_line_before_anything_is_written(tmp_path):
    # As in a wheel installed without the `examples` extra: scikit-learn cannot be imported.
    hide_sklearn = ("import runpy, sys; sys.modules['sklearn'] = None; sys.argv[0] = 'train'; "
                    "runpy.run_module('tfpipe.components.train', run_name='__main__')")
    out = subprocess.run(
        [sys.executable, "-c", hide_sklearn, "--task=digits", f"--model_dir={tmp_path}/r", "--train_steps=10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("train: ")]
    assert "task 'digits' without `task_config['data_uri']`" in line and "pip install 'tfpipe[examples]'" in line
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.timeout(600)  # Three trainer processes and two evaluators, one after another on 2 cores.
def test_continuous_eval_entry_point_beside_a_trainer_killed_and_restarted(gcs_emulator, gcs_bucket):
    """Train in stages (each run resumes) while the evaluator watches; kill -9 it mid-way; restart it."""
    import signal
    import time

    model_dir = f"{gcs_bucket}/runs/ce"
    env = {**os.environ, **gcs_emulator.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    watch = [sys.executable, "-m", "tfpipe.components.continuous_eval", "--task=digits", f"--model_dir={model_dir}",
             "--poll_interval=0.2", "--idle_timeout=120", "--best_metric=accuracy", "--best_mode=higher",
             "--target_step=120"]  # Each stage writes a completion marker; the target says more will come.
    evaluator = subprocess.Popen(watch, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    restarted = None
    try:
        for stage, steps in enumerate((40, 80, 120)):
            entry_point("train", gcs_emulator.env, "--task=digits", f"--model_dir={model_dir}",
                        f"--train_steps={steps}", "--steps_per_loop=20", "--checkpoint_interval=20")
            if stage == 1:  # Kill the evaluator once it has recorded something, then start a new one.
                deadline = time.monotonic() + 60
                while not records.steps() and time.monotonic() < deadline:
                    time.sleep(0.1)
                evaluator.send_signal(signal.SIGKILL)
                evaluator.wait(timeout=30)
                before_kill = records.steps()
                restarted = subprocess.Popen(watch, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True)
        marker = run_dir.read_json(f"{model_dir}/{run_dir.TRAINING_COMPLETE}")
        log, _ = restarted.communicate(timeout=120)
        exited = time.time()
    finally:
        for proc in (evaluator, restarted):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert restarted.returncode == 0, log[-3000:]
    assert records.steps() == list(range(20, 121, 20))  # Every checkpoint recorded exactly once.
    assert f"already recorded: {len(before_kill)}" in log  # The restarted evaluator skipped those.
    assert "target step 120 evaluated (step 120)" in log  # It stopped because the target was evaluated.
    assert exited >= marker["time"]  # How soon after the final checkpoint: bench/ continuous_eval measures it.
