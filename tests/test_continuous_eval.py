"""Continuous evaluation: policies, durable records, best pinning, deletions and stop conditions.

The first tests run trainer and evaluator in one process, one after the other; the last ones run
them as separate processes at the same time, on local disk and on gs:// through the GCS emulator,
killing and restarting the evaluator.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tfpipe import checks
import tfpipe.controller_core as orbit
from tfpipe.controller_core import checkpoint_watcher, eval_records, run_dir
from tests.support.tiny_runners import TinyRunner, checkpoint_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_run(model_dir, steps=30, interval=5, max_to_keep=None):
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), model_dir, max_to_keep=max_to_keep,
                                         step_counter=runner.global_step, checkpoint_interval=interval)
    orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=5,
                     checkpoint_manager=manager).train(steps)
    return runner


def evaluator(model_dir, runner=None, **kwargs):
    runner = runner or TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), model_dir, max_to_keep=None)
    return orbit.Controller(global_step=runner.global_step, evaluator=runner, checkpoint_manager=manager,
                            **kwargs), runner


# ----------------------------------------------------------------- selection


@pytest.mark.parametrize(
    "policy, recorded, final, expected",
    [
        ("all", [], None, [5, 10, 15, 20]),
        ("all", [5, 15], None, [10, 20]),
        ("latest", [], None, [20]),
        ("latest", [20], None, []),
        ("latest", [5], 20, [20]),
        (10, [], None, [10, 20]),
        (8, [], None, [10, 20]),  # Crossing 8 at 10 and 16 at 20.
        (100, [], 20, [20]),  # The final step is evaluated under every policy.
        (10, [10], None, [20]),
    ],
)
def test_select_pending(policy, recorded, final, expected):
    assert checkpoint_watcher.select_pending([20, 5, 15, 10], recorded, policy, final) == expected


@pytest.mark.parametrize("bad", ["some", 0, -5, "0", 2.5, True, None])
def test_parse_policy_rejects(bad):
    with pytest.raises(ValueError, match=r"`policy` must be 'all' \(every checkpoint\), 'latest'.*got"):
        checks.check_policy("policy", bad)


def test_parse_policy_accepts():
    assert [checks.check_policy("policy", p) for p in ("all", "latest", 100, "250")] == ["all", "latest", 100, 250]


def test_list_checkpoints_only_complete(tmp_path):
    train_run(str(tmp_path), steps=10)
    (tmp_path / "ckpt-15.data-00000-of-00001").write_bytes(b"partial")  # No .index yet: incomplete.
    assert sorted(checkpoint_watcher.list_checkpoints(str(tmp_path))) == [5, 10]


# ------------------------------------------------------------ in-process


def test_all_policy_records_each_checkpoint_once_and_stops_on_marker(tmp_path):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=30, interval=5)
    controller, _ = evaluator(model_dir)
    output = controller.evaluate_continuously(steps=2, poll_interval=0.05)
    stats = controller.last_continuous_eval
    assert stats.evaluated == [5, 10, 15, 20, 25, 30]
    assert stats.stop_reason == "training complete at step 30"
    assert "eval_loss" in output
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    assert records.steps() == [5, 10, 15, 20, 25, 30]
    record = records.read(10)
    assert record["step"] == 10 and record["checkpoint"] == f"{model_dir}/ckpt-10"
    assert 0 < record["metrics"]["eval_loss"] < 1 and record["duration"] > 0
    mtimes = {s: os.path.getmtime(records.path(s)) for s in records.steps()}

    # A restarted evaluator evaluates nothing again and stops at once.
    again, _ = evaluator(model_dir)
    assert again.evaluate_continuously(steps=2, poll_interval=0.05) is None
    assert again.last_continuous_eval.evaluated == []
    assert again.last_continuous_eval.already_recorded == [5, 10, 15, 20, 25, 30]
    assert {s: os.path.getmtime(records.path(s)) for s in records.steps()} == mtimes  # Never rewritten.


@pytest.mark.parametrize("policy, expected", [("latest", [30]), (10, [10, 20, 30]), ("12", [15, 25, 30])])
def test_latest_and_stride_policies(tmp_path, policy, expected):
    train_run(str(tmp_path), steps=30, interval=5)
    controller, _ = evaluator(str(tmp_path))
    controller.evaluate_continuously(steps=2, poll_interval=0.05, policy=policy)
    assert controller.last_continuous_eval.evaluated == expected


def test_target_step_stops_early(tmp_path):
    train_run(str(tmp_path), steps=30, interval=5)
    controller, _ = evaluator(str(tmp_path))
    controller.evaluate_continuously(steps=2, poll_interval=0.05, target_step=12)
    assert controller.last_continuous_eval.evaluated == [5, 10, 15]
    assert controller.last_continuous_eval.stop_reason == "target step 12 evaluated (step 15)"


def test_best_checkpoint_is_pinned_survives_gc_and_restarts(tmp_path):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=20, interval=5)
    controller, _ = evaluator(model_dir)
    controller.evaluate_continuously(steps=2, poll_interval=0.05, best_metric="eval_loss", best_mode="lower")
    best = eval_records.read_best_record(eval_records.eval_dir(model_dir, "validation"))
    assert best["step"] == 20  # The loss falls steadily on this problem.
    assert best["best_checkpoint"] == f"{model_dir}/eval/validation/best/ckpt-20"
    assert sorted(name for name in os.listdir(tmp_path / "eval/validation/best") if not name.startswith(".")) == [
        "best.json", "ckpt-20.data-00000-of-00001", "ckpt-20.index"]
    # The trainer's max_to_keep deletes the original; the pinned copy still restores.
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-20.*"):
        tf.io.gfile.remove(f)
    runner = TinyRunner()
    runner.checkpoint().restore(best["best_checkpoint"]).assert_existing_objects_matched()
    assert int(runner.global_step.numpy()) == 20
    # A restarted tracker knows the best value; a worse or equal one does not replace it.
    tracker = eval_records.BestCheckpoint(eval_records.eval_dir(model_dir, "validation"), "eval_loss", "lower")
    staged = tracker.stage(f"{model_dir}/ckpt-15")
    assert not tracker.consider({"step": 25, "checkpoint": f"{model_dir}/ckpt-15", "metrics": {"eval_loss": 10.0}},
                                staged)
    assert tracker.record["step"] == 20 and not tf.io.gfile.glob(f"{staged}.*")  # The loser's copy is dropped.


def test_the_best_checkpoint_is_pinned_even_when_the_trainer_deletes_it_during_its_evaluation(tmp_path):
    """max_to_keep deletes the checkpoint while it is evaluated: it was staged first, so it is pinned anyway."""
    model_dir = str(tmp_path)
    train_run(model_dir, steps=10, interval=5)
    controller, _ = evaluator(model_dir)
    restore = controller.restore_checkpoint

    def restore_then_collect_garbage(path=None):  # The trainer's max_to_keep, right after the restore.
        restored = restore(path)
        for f in tf.io.gfile.glob(f"{model_dir}/ckpt-*"):
            tf.io.gfile.remove(f)
        return restored

    controller.restore_checkpoint = restore_then_collect_garbage
    controller.evaluate_continuously(steps=2, poll_interval=0.05, best_metric="eval_loss", best_mode="lower",
                                     target_step=5)
    best = eval_records.read_best_record(eval_records.eval_dir(model_dir, "validation"))
    assert best["step"] == 5 and not tf.io.gfile.glob(f"{model_dir}/ckpt-5.*")
    restored = TinyRunner()
    restored.checkpoint().restore(best["best_checkpoint"]).assert_existing_objects_matched()
    assert best["checkpoint_fingerprint"] == eval_records.checkpoint_fingerprint(best["best_checkpoint"])


def _best_of_two_evaluated(model_dir, *, steps):
    """Trains to `steps` (a checkpoint every 5) and records and pins steps 5 and 10 (eval_loss 3.0, then 2.0).

    Returns:
        The evaluator's directory, its records and its best-checkpoint tracker.
    """
    train_run(model_dir, steps=steps, interval=5)
    directory = eval_records.eval_dir(model_dir, "validation")
    records = eval_records.EvalRecords(directory)
    tracker = eval_records.BestCheckpoint(directory, "eval_loss", "lower")
    for step, loss in ((5, 3.0), (10, 2.0)):
        staged = tracker.stage(f"{model_dir}/ckpt-{step}")
        tracker.consider(records.write(step, f"{model_dir}/ckpt-{step}", {"eval_loss": loss}), staged)
    return directory, records, tracker


def test_a_crash_between_the_record_and_the_pin_is_repaired_on_start(tmp_path):
    model_dir = str(tmp_path)
    directory, records, tracker = _best_of_two_evaluated(model_dir, steps=15)
    # Step 15 is better; its record was written, then the evaluator died (a full disk) mid-pin.
    tracker.stage(f"{model_dir}/ckpt-15")
    records.write(15, f"{model_dir}/ckpt-15", {"eval_loss": 1.0})
    tf.io.gfile.GFile(f"{directory}/best/ckpt-15.data-00000-of-00001", "w").write("partial")
    assert eval_records.read_best_record(directory)["step"] == 10

    controller, _ = evaluator(model_dir)  # A restarted evaluator...
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-15.*"):  # ...after the trainer deleted the original.
        tf.io.gfile.remove(f)
    controller.evaluate_continuously(steps=2, poll_interval=0.05, best_metric="eval_loss", best_mode="lower",
                                     target_step=15)
    best = eval_records.read_best_record(directory)
    assert best["step"] == 15 and best["best_checkpoint"].endswith("best/ckpt-15")
    assert sorted(os.listdir(f"{directory}/best")) == [".candidate", "best.json", "ckpt-15.data-00000-of-00001",
                                                       "ckpt-15.index"]
    assert not os.listdir(f"{directory}/best/.candidate")
    TinyRunner().checkpoint().restore(best["best_checkpoint"]).assert_existing_objects_matched()


def test_a_kill_inside_the_pin_keeps_the_complete_copy_in_best_and_completes_the_pin(tmp_path, monkeypatch):
    """Killed after the candidate was moved into best/ but before best.json, then the original deleted.

    The restart recognises the copy in best/ by its fingerprint and pins it; a worse checkpoint never replaces
    it, and export's `auto` resolves to it.
    """
    from tfpipe.components.common import checkpoints

    model_dir = str(tmp_path)
    directory, records, tracker = _best_of_two_evaluated(model_dir, steps=20)

    class Killed(BaseException):
        """kill -9: nothing after this point runs."""

    write_json_atomic = run_dir.write_json_atomic

    def killed_before_best_json(path, *args, **kwargs):
        if path.endswith(f"/{eval_records.BEST_RECORD}"):
            raise Killed()
        return write_json_atomic(path, *args, **kwargs)

    staged = tracker.stage(f"{model_dir}/ckpt-15")
    written = records.write(15, f"{model_dir}/ckpt-15", {"eval_loss": 1.0},
                            checkpoint_fingerprint=eval_records.checkpoint_fingerprint(staged))
    monkeypatch.setattr(run_dir, "write_json_atomic", killed_before_best_json)
    with pytest.raises(Killed):
        tracker.consider(written, staged)
    monkeypatch.undo()
    assert eval_records.read_best_record(directory)["step"] == 10
    assert sorted(os.listdir(f"{directory}/best/.candidate")) == []  # The candidate is in best/ already.
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-15.*"):  # The trainer's max_to_keep deletes the original.
        tf.io.gfile.remove(f)

    restarted = eval_records.BestCheckpoint(directory, "eval_loss", "lower")
    restarted.repair(records)
    best = eval_records.read_best_record(directory)
    assert best["step"] == 15 and best["best_checkpoint"] == f"{directory}/best/ckpt-15"
    assert eval_records.checkpoint_fingerprint(best["best_checkpoint"]) == written["checkpoint_fingerprint"]
    runner = TinyRunner()
    runner.checkpoint().restore(best["best_checkpoint"]).assert_existing_objects_matched()
    assert int(runner.global_step.numpy()) == 15
    assert not tf.io.gfile.glob(f"{directory}/best/ckpt-10.*")

    # A later checkpoint better than the old pin (10) but worse than the recorded best (15) does not replace it.
    staged = restarted.stage(f"{model_dir}/ckpt-20")
    assert not restarted.consider(records.write(20, f"{model_dir}/ckpt-20", {"eval_loss": 1.5}), staged)
    assert eval_records.read_best_record(directory)["step"] == 15
    assert checkpoints.resolve_checkpoint(model_dir, "auto", "validation") == f"{directory}/best/ckpt-15"


def test_a_best_copy_that_is_not_the_recorded_checkpoint_is_not_pinned(tmp_path):
    """A copy in best/ whose fingerprint differs from the record (another checkpoint, same name) is never pinned."""
    model_dir = str(tmp_path)
    directory, records, tracker = _best_of_two_evaluated(model_dir, steps=15)
    records.write(15, f"{model_dir}/ckpt-15", {"eval_loss": 1.0})
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-5.*"):  # Another checkpoint's bytes under step 15's name.
        tf.io.gfile.copy(f, f"{directory}/best/ckpt-15{f[len(model_dir) + 7:]}")
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-15.*"):
        tf.io.gfile.remove(f)
    eval_records.BestCheckpoint(directory, "eval_loss", "lower").repair(records)
    assert eval_records.read_best_record(directory)["step"] == 10


def test_nan_never_becomes_best(tmp_path):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=10, interval=5)
    tracker = eval_records.BestCheckpoint(str(tmp_path / "eval" / "x"), "m/loss", "lower")
    assert not tracker.consider({"step": 5, "checkpoint": f"{model_dir}/ckpt-5", "metrics": {"m": {"loss": math.nan}}},
                                tracker.stage(f"{model_dir}/ckpt-5"))
    assert tracker.record is None
    assert tracker.consider({"step": 10, "checkpoint": f"{model_dir}/ckpt-10", "metrics": {"m": {"loss": 3.0}}},
                            tracker.stage(f"{model_dir}/ckpt-10"))
    with pytest.raises(ValueError, match=r"`best_mode` must be one of \['higher', 'lower'\], got 'up'"):
        eval_records.BestCheckpoint(str(tmp_path), "loss", "up")


def test_records_keep_nan_and_are_never_rewritten(tmp_path):
    records = eval_records.EvalRecords(str(tmp_path))
    first = records.write(7, "/x/ckpt-7", {"loss": float("nan"), "nested": {"acc": tf.constant(0.5)}})
    assert math.isnan(first["metrics"]["loss"]) and first["metrics"]["nested"]["acc"] == 0.5
    second = records.write(7, "/x/ckpt-7", {"loss": 1.0})
    assert math.isnan(second["metrics"]["loss"]) and math.isnan(records.read(7)["metrics"]["loss"])
    assert os.listdir(tmp_path / "records") == ["000000000007.json"]


def test_checkpoint_deleted_after_listing_is_skipped(tmp_path, monkeypatch):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=20, interval=5)
    real_list = checkpoint_watcher.list_checkpoints
    stale = real_list(model_dir)  # A listing taken before the trainer's GC removed ckpt-10.
    for f in tf.io.gfile.glob(f"{model_dir}/ckpt-10.*"):
        tf.io.gfile.remove(f)
    calls = {"n": 0}

    def listing(directory, name="ckpt"):
        calls["n"] += 1
        return dict(stale) if calls["n"] <= 2 else real_list(directory, name)

    monkeypatch.setattr(checkpoint_watcher, "list_checkpoints", listing)
    controller, _ = evaluator(model_dir)
    controller.evaluate_continuously(steps=2, poll_interval=0.05)
    stats = controller.last_continuous_eval
    assert stats.evaluated == [5, 15, 20] and stats.skipped == [10]


def test_checkpoint_deleted_between_listings_is_reported(tmp_path):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=20, interval=5)

    def delete_ckpt_10(output):  # Plays the trainer's max_to_keep while ckpt-5 is evaluated.
        for f in tf.io.gfile.glob(f"{model_dir}/ckpt-10.*"):
            tf.io.gfile.remove(f)

    controller, _ = evaluator(model_dir, eval_actions=[delete_ckpt_10])
    controller.evaluate_continuously(steps=2, poll_interval=0.05)
    assert controller.last_continuous_eval.evaluated == [5, 15, 20]
    assert controller.last_continuous_eval.skipped == [10]


def test_idle_timeout_is_an_error_naming_last_step(tmp_path):
    model_dir = str(tmp_path)
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), model_dir, None, step_counter=runner.global_step,
                                         checkpoint_interval=5)
    orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=5,
                     checkpoint_manager=manager).train(10, checkpoint_at_completion=False)  # No marker: "died".
    controller, _ = evaluator(model_dir)
    with pytest.raises(TimeoutError, match=r"No new checkpoint in .* for 1 s \(`idle_timeout`=0.5\); last step seen: 10"):
        controller.evaluate_continuously(steps=2, poll_interval=0.1, idle_timeout=0.5)
    assert controller.last_continuous_eval.evaluated == [5, 10]
    empty, _ = evaluator(str(tmp_path / "empty"))
    with pytest.raises(TimeoutError, match=r"last step seen: none"):
        empty.evaluate_continuously(poll_interval=0.1, idle_timeout=0.3)


def test_marker_short_of_target_step_does_not_stop_and_times_out_clearly(tmp_path):
    train_run(str(tmp_path), steps=10, interval=5)  # Completed at 10; the evaluator expects 20.
    controller, _ = evaluator(str(tmp_path))
    with pytest.raises(TimeoutError, match=r"last step seen: 10; training_complete.json says training finished at "
                                           r"step 10, short of `target_step` 20"):
        controller.evaluate_continuously(steps=2, poll_interval=0.05, target_step=20, idle_timeout=0.5)
    assert controller.last_continuous_eval.evaluated == [5, 10]


def test_orbit_timeout_and_timeout_fn(tmp_path):
    model_dir = str(tmp_path)
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), model_dir, None, step_counter=runner.global_step,
                                         checkpoint_interval=5)
    orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=5,
                     checkpoint_manager=manager).train(5, checkpoint_at_completion=False)
    calls = []

    def timeout_fn():
        calls.append(time.monotonic())
        return len(calls) >= 2

    controller, _ = evaluator(model_dir)
    output = controller.evaluate_continuously(steps=2, timeout=0.3, timeout_fn=timeout_fn, poll_interval=0.05)
    assert len(calls) == 2 and "eval_loss" in output
    assert controller.last_continuous_eval.stop_reason == "no new checkpoint for 0.3 s"
    # Without timeout_fn, the timeout alone stops the loop (Orbit's behaviour).
    again, _ = evaluator(model_dir, )
    again.evaluate_continuously(steps=2, timeout=0.2, poll_interval=0.05, eval_name="second")
    assert again.last_continuous_eval.evaluated == [5]


def test_evaluator_returns_its_stats_and_the_controller_attribute_is_derived(tmp_path):
    train_run(str(tmp_path), steps=10, interval=5)
    controller, _ = evaluator(str(tmp_path))
    stats = orbit.continuous_eval.ContinuousEvaluator(controller, poll_interval=0.05).run(steps=2)
    assert stats.evaluated == [5, 10] and stats.stop_reason == "training complete at step 10"
    assert "eval_loss" in stats.output
    assert controller.last_continuous_eval is None  # Only Controller.evaluate_continuously sets it.
    output = controller.evaluate_continuously(steps=2, poll_interval=0.05, eval_name="other")
    assert controller.last_continuous_eval.output is output


def test_rerun_over_recorded_checkpoints_says_so_and_how_to_reevaluate(tmp_path, capsys):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=10, interval=5)
    first, _ = evaluator(model_dir)
    first.evaluate_continuously(steps=2, poll_interval=0.05)
    capsys.readouterr()
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    before = {s: os.path.getmtime(records.path(s)) for s in records.steps()}

    again, _ = evaluator(model_dir)
    assert again.evaluate_continuously(steps=2, poll_interval=0.05) is None
    out = capsys.readouterr().out
    assert (f" eval | WARNING | Evaluated nothing: every checkpoint to evaluate already has a record of evaluator "
            f"'validation' in {records.records_dir} (steps 5, 10), written by an earlier run") in out
    assert "pass a new `eval_name`" in out

    # A new eval_name evaluates everything again into new records; the old ones stay as they were.
    third, _ = evaluator(model_dir)
    third.evaluate_continuously(steps=2, poll_interval=0.05, eval_name="validation-2")
    assert third.last_continuous_eval.evaluated == [5, 10]
    assert eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation-2")).steps() == [5, 10]
    assert {s: os.path.getmtime(records.path(s)) for s in records.steps()} == before


def test_eval_identity_is_recorded_and_a_changed_one_is_refused(tmp_path):
    model_dir = str(tmp_path)
    train_run(model_dir, steps=10, interval=5)
    identity = {"task": "tiny", "task_config": {"eval_split": "test"}, "eval_steps": 2}
    controller, _ = evaluator(model_dir)
    controller.evaluate_continuously(steps=2, poll_interval=0.05, target_step=5, eval_identity=identity)
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    record = records.read(5)
    assert record["eval_identity"] == identity
    assert record["eval_fingerprint"] == orbit.continuous_eval.fingerprint(identity)

    changed = {**identity, "task_config": {"eval_split": "validation"}}
    refused, _ = evaluator(model_dir)
    with pytest.raises(ValueError, match=r"`eval_identity` differs from the one the records of evaluator "
                                         r"'validation' were made with \(.*records, step 5\): changed "
                                         r"\['task_config'\]; recorded " r'\{"task_config": \{"eval_split": '
                                         r'"test"\}\}, now .*pass a new `eval_name`.*Nothing was evaluated.'):
        refused.evaluate_continuously(steps=2, poll_interval=0.05, eval_identity=changed)
    assert records.steps() == [5]  # Refused before any work.

    # The same identity (keys in any order) continues the records; so does a caller that gives none.
    same, _ = evaluator(model_dir)
    same.evaluate_continuously(steps=2, poll_interval=0.05, eval_identity=dict(reversed(list(identity.items()))))
    assert same.last_continuous_eval.evaluated == [10]
    assert records.read(10)["eval_fingerprint"] == record["eval_fingerprint"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(timeout=0), r"`timeout` \(0\) must be a positive number of seconds or None."),
        (dict(idle_timeout=-1), r"`idle_timeout` \(-1\) must be a positive number"),
        (dict(poll_interval=0), r"`poll_interval` \(0\) must be a positive number"),
        (dict(target_step=0), r"`target_step` must be a positive integer \(at most \d+\), got 0."),
        (dict(eval_name="a/b"), r"`eval_name` must be a non-empty name of letters, digits, '_', '-' or '.' \(at most 100 characters\), got 'a/b'."),
        (dict(best_metric="loss", best_mode="max"), r"`best_mode` must be one of \['higher', 'lower'\]"),
        (dict(policy="every"), r"`policy` must be"),
        (dict(eval_identity=["task"]), r"`eval_identity` must be a mapping of JSON values or None, got list."),
        (dict(eval_identity={"data": object()}), r"`eval_identity` must hold JSON values only: Object of type "
                                                 r"object is not JSON serializable"),
    ],
)
def test_evaluate_continuously_value_errors(tmp_path, kwargs, message):
    controller, _ = evaluator(str(tmp_path))
    with pytest.raises(ValueError, match=message):
        controller.evaluate_continuously(**kwargs)


# ---------------------------------------------------------- two processes


def worker(mode, model_dir, env=None, **flags):
    args = [sys.executable, "-m", "tests.support.ce_worker", mode, f"--model_dir={model_dir}"]
    args += [f"--{k}={v}" for k, v in flags.items()]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    stats = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("STATS ")]
    return proc.returncode, (stats[0] if stats else None), out + err


def wait_for_records(model_dir, count, timeout=240):
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(records.steps()) >= count:
            return records.steps()
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} records after {timeout} s")


@pytest.fixture(params=["local", "gcs"])
def shared_model_dir(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "run"), {}
    emulator = request.getfixturevalue("gcs_emulator")
    bucket = request.getfixturevalue("gcs_bucket")
    return f"{bucket}/run", emulator.env


def test_trainer_and_evaluator_processes_kill_and_restart(shared_model_dir):
    model_dir, env = shared_model_dir
    trainer = worker("train", model_dir, env, steps=40, interval=4, train_sleep=0.15)
    first = worker("evaluate", model_dir, env, poll=0.2, idle_timeout=60)
    before_kill = wait_for_records(model_dir, 2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    second = worker("evaluate", model_dir, env, poll=0.2, idle_timeout=60)
    assert finish(trainer)[0] == 0
    code, stats, log = finish(second)
    assert code == 0, log
    marker = run_dir.read_json(f"{model_dir}/{run_dir.TRAINING_COMPLETE}")
    records = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation"))
    expected = list(range(4, 41, 4))
    assert records.steps() == expected  # Every checkpoint has exactly one record.
    assert not set(stats["evaluated"]) & set(before_kill)  # Nothing recorded before the kill ran again.
    assert sorted(stats["evaluated"] + stats["already_recorded"]) == expected
    assert stats["stop_reason"] == "training complete at step 40" and stats["skipped"] == []
    # It stopped because of the marker, after the final checkpoint was written (how soon: bench/ continuous_eval).
    assert stats["exit_time"] >= marker["time"]
    assert stats["best"]["step"] == 40


def test_slow_evaluator_with_max_to_keep_2_reports_deleted(tmp_path):
    model_dir = str(tmp_path / "run")
    trainer = worker("train", model_dir, steps=48, interval=4, train_sleep=0.1, max_to_keep=2)
    slow = worker("evaluate", model_dir, poll=0.1, eval_sleep=0.6, idle_timeout=60)
    assert finish(trainer)[0] == 0
    code, stats, log = finish(slow)
    assert code == 0, log
    surviving = checkpoint_steps(model_dir)
    assert surviving == [44, 48]
    recorded = eval_records.EvalRecords(eval_records.eval_dir(model_dir, "validation")).steps()
    assert set(surviving) <= set(recorded)  # Every surviving checkpoint is evaluated.
    assert stats["skipped"], stats  # The evaluator fell behind and saw checkpoints vanish...
    assert not set(stats["skipped"]) & set(recorded)  # ...which it reported, not evaluated,
    assert all(s % 4 == 0 for s in stats["skipped"] + recorded)  # and all were real checkpoints.
    assert "skipped: checkpoint deleted before evaluation" in log
    print(f"max_to_keep=2: evaluated {len(recorded)}, skipped {len(stats['skipped'])} of 12 checkpoints")


def test_trainer_killed_early_makes_evaluator_fail_after_idle_timeout(tmp_path):
    model_dir = str(tmp_path / "run")
    trainer = worker("train", model_dir, steps=400, interval=4, train_sleep=0.1)
    # Started once training has begun, with room for a loaded machine's gaps between checkpoints: an evaluator
    # that started first could time out before the first checkpoint, and then no record would ever come.
    deadline = time.monotonic() + 240
    while not checkpoint_steps(model_dir):
        assert trainer.poll() is None and time.monotonic() < deadline, "the trainer wrote no checkpoint"
        time.sleep(0.1)
    evaluator_proc = worker("evaluate", model_dir, poll=0.1, idle_timeout=10)
    wait_for_records(model_dir, 2)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    last = max(checkpoint_steps(model_dir))
    code, stats, log = finish(evaluator_proc, timeout=60)
    assert code != 0
    assert f"last step seen: {last}" in log and "TimeoutError" in log
    assert stats["stop_reason"] == "idle timeout"
