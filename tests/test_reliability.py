"""Nothing lost, nothing wrong: faults and mistakes injected for real.

A full disk (a small tmpfs, remounted larger for the retry), a deleted or corrupt checkpoint state file, an empty
`.index`, a save killed mid-way, secrets in task configs, exports whose files were replaced. Two trainers on one run
directory: tests/test_leases.py.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import checkpoints
from tfpipe.components.common import commits
from tfpipe.components.export import runtime as export
from tfpipe.components.common import run_config
from tfpipe.components import tasks
from tfpipe.components.train import runtime as train
from tfpipe.controller_core import checkpoint_watcher
from tests.support.requirements import unavailable

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST = {"batch_size": 32}


def _train(model_dir, steps, **kwargs):
    return train.run(task="digits", task_config=FAST, model_dir=str(model_dir), train_steps=steps, steps_per_loop=10,
                     checkpoint_interval=10, **kwargs)


def _contents(model_dir):
    """The checkpoint files (a kill mid-save leaves a `ckpt-N_temp/` folder, which the next start removes)."""
    return {p.name: p.read_bytes() for p in pathlib.Path(model_dir).glob("ckpt-*") if p.is_file()}


# -- the checkpoint state file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "unparsable", "names an older checkpoint", "empty", "not utf-8"])
def test_train_never_trains_over_checkpoints_when_the_state_file_is_damaged(tmp_path, damage, capsys):
    _train(tmp_path, 30)
    before = _contents(tmp_path)
    state = tmp_path / "checkpoint"
    if damage == "deleted":
        state.unlink()
    elif damage == "unparsable":
        state.write_text("model_checkpoint_path: <<< not a text proto")
    elif damage == "empty":
        state.write_bytes(b"")
    elif damage == "not utf-8":
        state.write_bytes(b"\xff\xfe\x00model_checkpoint_path: \xc3\x28")
    else:
        state.write_text('model_checkpoint_path: "ckpt-10"\nall_model_checkpoint_paths: "ckpt-10"\n')
    damaged = state.read_bytes() if state.exists() else None
    result = _train(tmp_path, 50)
    assert result.final_step == 50
    after = _contents(tmp_path)
    assert {name: after[name] for name in before} == before  # ckpt-10/20/30 untouched...
    assert sorted(checkpoint_watcher.list_checkpoints(str(tmp_path))) == [10, 20, 30, 40, 50]  # ...training went on.
    assert "recovered ckpt-30 from the checkpoint files" in capsys.readouterr().out
    if damage in ("unparsable", "empty", "not utf-8"):  # The damaged file is kept beside the rebuilt one.
        assert (tmp_path / "checkpoint.unreadable").read_bytes() == damaged


def test_an_empty_index_is_not_a_checkpoint_and_dead_save_temporaries_are_removed(tmp_path):
    _train(tmp_path, 20)
    (tmp_path / "ckpt-30.index").write_bytes(b"")  # A merge that failed on a full disk.
    (tmp_path / "ckpt-30.data-00000-of-00001").write_bytes(b"partial")
    (tmp_path / "ckpt-30_temp").mkdir()  # A save killed mid-way (kill -9).
    (tmp_path / "ckpt-30_temp" / "part-00000-of-00001.index").write_bytes(b"x")
    assert sorted(checkpoint_watcher.list_checkpoints(str(tmp_path))) == [10, 20]
    assert checkpoints.resolve_checkpoint(str(tmp_path), "latest", "validation").endswith("ckpt-20")
    assert _train(tmp_path, 40).final_step == 40
    assert not (tmp_path / "ckpt-30_temp").exists()
    assert sorted(checkpoint_watcher.list_checkpoints(str(tmp_path))) == [10, 20, 30, 40]


# -- a full disk, for real: a small tmpfs -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs; `resize(kib)` remounts it with another size (root only; CI runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        unavailable(f"cannot mount a tmpfs (needs root): {out.stderr.strip()}")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mount)], check=True, capture_output=True)

    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    _train(model_dir, 20)
    return str(model_dir)


def test_an_export_cut_short_by_a_full_disk_is_completed_by_the_retry(small_disk, trained_dir):
    mount, resize = small_disk
    resize(112)  # Room for the staged SavedModel (about 70 KB), not for its copy as well.
    output = mount / "model"
    with pytest.raises((tf.errors.ResourceExhaustedError, OSError, tf.errors.OpError)):
        export.run(task="digits", task_config=FAST, model_dir=trained_dir, output_path=str(output),
                   checkpoint="latest")
    assert not output.exists()  # The copy was made under a temporary name: nothing half-written is visible...
    assert not [p for p in mount.iterdir() if ".tmp-" in p.name]  # ...and the temporaries are removed.
    resize(16 * 1024)
    result = export.run(task="digits", task_config=FAST, model_dir=trained_dir, output_path=str(output),
                        checkpoint="latest")
    marker = json.loads((output / export.EXPORT_INFO).read_text())
    assert marker["step"] == result.step == 20 and marker["checkpoint_fingerprint"]
    tf.saved_model.load(str(output))


def test_training_cut_short_by_a_full_disk_resumes_without_losing_a_checkpoint(small_disk):
    mount, resize = small_disk
    resize(64 * 1024)
    model_dir = mount / "run"
    _train(model_dir, 20)
    before = _contents(model_dir)
    used = sum(len(b) for b in before.values())
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    resize(int((64 * 1024 * 1024 - free + used // 2) / 1024))  # Room for about half a checkpoint more.
    with pytest.raises(Exception):
        _train(model_dir, 40)
    resize(64 * 1024)
    assert _train(model_dir, 40).final_step == 40
    after = _contents(model_dir)
    assert {name: after[name] for name in before} == before
    assert sorted(checkpoint_watcher.list_checkpoints(str(model_dir))) == [10, 20, 30, 40]


# -- one trainer per run directory --------------------------------------------------------------------------------


def _start_trainer(model_dir, steps, env, tag):
    flags = ["--task=digits", '--task_config={"batch_size": 32}', f"--model_dir={model_dir}",
             f"--train_steps={steps}", "--steps_per_loop=10", "--checkpoint_interval=10"]
    return subprocess.Popen([sys.executable, "-m", "tfpipe.components.train", *flags], cwd=ROOT,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


# -- run config: effective values, evaluation against training's, secrets -----------------------------------------


def test_run_config_compares_effective_values(tmp_path):
    _train(tmp_path, 10)
    train.run(task="digits", task_config={"batch_size": 32, "seed": 0}, model_dir=str(tmp_path), train_steps=20,
              steps_per_loop=10, checkpoint_interval=10)  # seed 0 is the default: the same config.
    with pytest.raises(checks.InputError, match=r"task_config\['seed'\]: 0 there, 1 here"):
        train.run(task="digits", task_config={"batch_size": 32, "seed": 1}, model_dir=str(tmp_path),
                  train_steps=30, steps_per_loop=10, checkpoint_interval=10)


def test_an_invalid_config_writes_no_run_config(tmp_path):
    with pytest.raises(checks.InputError):
        train.run(task="digits", task_config={"hidden_units": 0}, model_dir=str(tmp_path / "run"), train_steps=10)
    assert not (tmp_path / "run").exists()
    assert _train(tmp_path / "run", 10).final_step == 10  # The corrected rerun is not refused.


def test_evaluators_refuse_another_split_unless_told(tmp_path, capsys):
    from tfpipe.components.evaluate import runtime as evaluate

    _train(tmp_path, 10)
    other_split = {**FAST, "eval_fraction": 0.5}
    with pytest.raises(checks.InputError, match=r"`task_config` differs from the one `model_dir`.*eval_fraction"):
        evaluate.run(task="digits", task_config=other_split, model_dir=str(tmp_path))
    assert evaluate.run(task="digits", task_config={**FAST, "batch_size": 8}, model_dir=str(tmp_path),
                        eval_name="small-batches").step == 10  # An evaluation-only key may differ.
    result = evaluate.run(task="digits", task_config=other_split, model_dir=str(tmp_path), eval_name="other",
                          allow_different_config=True)
    assert result.step == 10 and "the task config differs from training's" in capsys.readouterr().out


def test_secrets_are_redacted_and_can_come_from_the_environment(tmp_path, monkeypatch):
    wanted = {"task": "t", "task_config": {"api_token": "s3cr3t-new", "n": 1}}
    run_config.record_run_config(str(tmp_path), {"task": "t", "task_config": {"api_token": "s3cr3t-old", "n": 1}})
    with pytest.raises(checks.InputError) as raised:
        run_config.check_run_config(str(tmp_path), wanted, for_training=True)
    assert "api_token" in str(raised.value) and "s3cr3t" not in str(raised.value)
    assert checks.redacted("password", "x") == "<redacted>" and checks.redacted("batch", 3) == 3

    monkeypatch.setenv("DATA_URI_FROM_SECRET", str(tmp_path / "data"))
    from tfpipe.components.tasks import digits

    digits.write_tfrecords(str(tmp_path / "data"))
    task = tasks.build_task("digits", {"data_uri": {"from_env": "DATA_URI_FROM_SECRET"}})
    assert task.config["data_uri"] == str(tmp_path / "data")
    with pytest.raises(checks.InputError, match=r"takes its value from the environment variable 'NOT_SET_HERE'"):
        tasks.build_task("digits", {"data_uri": {"from_env": "NOT_SET_HERE"}})


def test_entry_points_print_one_line_for_bad_input(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", "--task=subprocess:run", "--model_dir=" + str(tmp_path),
         "--train_steps=10", '--task_config={"touch": 1}'],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("train: `task` ('subprocess:run') is not declared")
    assert "Traceback" not in out.stderr and not list(tmp_path.iterdir())


# -- identity, not step numbers -----------------------------------------------------------------------------------


def test_a_checkpoint_of_another_run_is_never_judged_by_this_runs_records(tmp_path, trained_dir):
    from tfpipe.components.continuous_eval import runtime as continuous_eval
    from tfpipe.components.evaluate import runtime as evaluate

    continuous_eval.run(task="digits", task_config=FAST, model_dir=trained_dir, poll_interval=0.1, idle_timeout=30,
                        eval_name="identity")
    other = tmp_path / "other"
    _train(other, 20)  # Same steps, another model: its ckpt-20 is not trained_dir's ckpt-20.
    for component, kwargs in ((export.run, dict(output_path=str(tmp_path / "m"), thresholds={"accuracy": ">= 0.1"})),
                              (evaluate.run, {})):
        with pytest.raises(checks.InputError, match=r"is not in `model_dir`"):
            component(task="digits", task_config=FAST, model_dir=trained_dir, checkpoint=f"{other}/ckpt-20",
                      eval_name="identity", **kwargs)
    assert not (tmp_path / "m").exists()
    own = checkpoints.record_of(trained_dir, "identity", f"{trained_dir}/ckpt-20")
    assert own is not None and checkpoints.record_of(trained_dir, "identity", f"{other}/ckpt-20") is None


# -- kill -9 at random points ------------------------------------------------------------------------------------


def test_training_killed_at_random_points_never_loses_or_rewrites_a_checkpoint(tmp_path):
    import random
    import signal

    rng = random.Random(20261130)
    model_dir = tmp_path / "run"
    seen = {}
    for attempt in range(4):
        proc = _start_trainer(model_dir, 200, dict(os.environ), f"kill-{attempt}")
        time.sleep(rng.uniform(4.0, 12.0))  # Somewhere in start-up, a train loop or a save.
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        for name, data in _contents(model_dir).items():
            if name.endswith(".index") and data:  # A complete checkpoint is never rewritten afterwards.
                assert seen.setdefault(name, data) == data, name
    final = _start_trainer(model_dir, 200, dict(os.environ), "final")
    log, _ = final.communicate(timeout=300)
    assert final.returncode == 0, log[-3000:]
    assert "train | done | step: 200" in log
    for name, data in seen.items():  # Those max_to_keep did not delete since are as they were written.
        if (model_dir / name).exists():
            assert (model_dir / name).read_bytes() == data, name
    steps = sorted(checkpoint_watcher.list_checkpoints(str(model_dir)))
    assert steps[-1] == 200 and not list(model_dir.glob("*_temp"))
    assert checkpoints.recover_checkpoint_state(str(model_dir)).endswith("ckpt-200")  # The state file agrees.


# -- an unreadable newest checkpoint: evaluators restore only what they are asked -------------------------------


@pytest.fixture
def empty_newest_index(tmp_path):
    model_dir = tmp_path / "run"
    _train(model_dir, 30)
    (model_dir / "ckpt-30.index").write_bytes(b"")  # A full disk during the merge; the state file names it.
    return model_dir


def test_evaluate_an_older_step_beside_an_empty_newest_index(empty_newest_index, capsys):
    from tfpipe.components.evaluate import runtime as evaluate

    result = evaluate.run(task="digits", task_config=FAST, model_dir=str(empty_newest_index), checkpoint=20)
    assert result.step == 20 and result.record["step"] == 20
    assert (empty_newest_index / "ckpt-30.index").read_bytes() == b""  # Left as it was.


def test_continuous_eval_skips_an_empty_newest_index_and_says_so(empty_newest_index, capsys):
    from tfpipe.components.continuous_eval import runtime as continuous_eval

    result = continuous_eval.run(task="digits", task_config=FAST, model_dir=str(empty_newest_index),
                                 idle_timeout=5, poll_interval=0.2)
    assert result.evaluated == [10, 20]
    out = capsys.readouterr().out
    assert "the latest checkpoint" in out and "is incomplete (its .index is empty or missing)" in out, out[-3000:]
    assert "not evaluated: the final checkpoint" in out and "is incomplete (its .index is empty)" in out, out[-3000:]
    assert (empty_newest_index / "ckpt-30.index").exists() and (empty_newest_index / "ckpt-30.index").read_bytes() == b""


# -- exports: a marker tied to its content, version folders never visible half-written ---------------------------


def _export(trained_dir, output, **kwargs):
    return export.run(task="digits", task_config=FAST, model_dir=trained_dir, output_path=str(output), **kwargs)


def _versions(export_dir):
    """What TF Serving would load: the numbered folders."""
    return sorted(p.name for p in pathlib.Path(export_dir).iterdir() if p.name.isdigit()) if os.path.isdir(
        export_dir) else []


def test_an_export_whose_variables_were_replaced_is_refused_by_the_rerun_and_the_gate(trained_dir, tmp_path):
    from tfpipe.components.baseline import runtime as baseline

    serving = tmp_path / "serving"
    _export(trained_dir, tmp_path / "model", checkpoint=20, export_dir=str(serving))
    marker = json.loads((serving / "20" / export.EXPORT_INFO).read_text())
    assert marker["manifest"]["saved_model.pb"]["size"] == (serving / "20" / "saved_model.pb").stat().st_size
    other = tmp_path / "other"
    _export(trained_dir, other, checkpoint=10)
    for name in ("variables.index", "variables.data-00000-of-00001"):  # Step 10's weights under step 20's marker.
        (serving / "20" / "variables" / name).write_bytes((other / "variables" / name).read_bytes())
    with pytest.raises(checks.InputError, match=r"serving/20 has a commit marker naming .*ckpt-20 \(step 20\), but "
                                                r"its files differ from its marker's manifest: changed \['variables/"):
        _export(trained_dir, tmp_path / "model2", checkpoint=20, export_dir=str(serving))
    with pytest.raises(checks.InputError, match=r"is not the export its tfpipe_export.json describes: its files "
                                                r"differ"):
        baseline.beats_baseline({"accuracy": 1.0}, str(serving / "20"), "gs://b/serving/20", metric="accuracy",
                                mode="higher", thresholds_passed=True)


@pytest.mark.parametrize("forger", ["copies the marker", "recomputes the manifest"])
def test_a_forged_marker_on_another_model_is_refused(trained_dir, tmp_path, forger):
    _export(trained_dir, tmp_path / "model", checkpoint=20)
    forged = tmp_path / "forged"
    _export(trained_dir, forged, checkpoint=10)  # Another model...
    marker = json.loads((tmp_path / "model" / export.EXPORT_INFO).read_text())  # ...under step 20's marker.
    if forger == "recomputes the manifest":
        marker["manifest"] = commits.manifest(str(forged), marker=export.EXPORT_INFO)
    (forged / export.EXPORT_INFO).write_text(json.dumps(marker))
    before = commits.manifest(str(forged), marker="")
    with pytest.raises(checks.InputError, match=(
            r"forged has a commit marker naming .*ckpt-20 \(step 20\), but (its files differ from its marker.s "
            r"manifest|it predicts otherwise than .*ckpt-20)")):
        _export(trained_dir, forged, checkpoint=20)
    assert commits.manifest(str(forged), marker="") == before  # Nothing was overwritten.


def test_a_full_disk_mid_write_never_leaves_a_visible_version_folder(trained_dir, tmp_path, monkeypatch):
    import errno

    serving, output = tmp_path / "serving", tmp_path / "model"
    copy = tf.io.gfile.copy

    def full_disk_at_saved_model_pb(source, target, overwrite=False):
        if target.endswith("saved_model.pb") and f"{serving}/" in target:  # Writing the TF Serving version.
            with open(target, "wb") as f:  # A truncated write, then the disk is full.
                f.write(b"\x08\x01")
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, target, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", full_disk_at_saved_model_pb)
    with pytest.raises(OSError, match="No space left"):
        _export(trained_dir, output, checkpoint=20, export_dir=str(serving))
    assert _versions(serving) == []  # Nothing half-written is visible to TF Serving.
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # Temporaries removed.
    monkeypatch.undo()
    _export(trained_dir, output, checkpoint=20, export_dir=str(serving))  # The retry commits.
    assert _versions(serving) == ["20"] and commits.verify(str(serving / "20"), marker=export.EXPORT_INFO) is None


def test_publish_on_gcs_verifies_the_copy_and_writes_the_marker_last(tmp_path, gcs_bucket):
    source = tmp_path / "model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"pb" * 1000)
    (source / "variables" / "variables.index").write_bytes(b"index")
    info = {"step": 1, "manifest": commits.manifest(str(source), marker="marker.json")}
    assert sorted(info["manifest"]) == ["saved_model.pb", "variables/variables.index"]
    destination = f"{gcs_bucket}/serving/1"
    assert commits.publish(str(source), destination, marker="marker.json", info=info) is True
    assert commits.verify(destination, marker="marker.json") is None
    assert not [p for p in tf.io.gfile.listdir(f"{gcs_bucket}/serving") if ".tmp-" in p]
    with tf.io.gfile.GFile(f"{destination}/variables/variables.index", "wb") as f:
        f.write(b"other")
    assert commits.verify(destination, marker="marker.json") == (
        "its files differ from its marker's manifest: changed ['variables/variables.index']")


def test_evaluate_says_why_a_rewritten_checkpoint_cannot_be_recorded(tmp_path):
    from tfpipe.components.evaluate import runtime as evaluate

    model_dir = tmp_path / "run"
    _train(model_dir, 10)
    evaluate.run(task="digits", task_config=FAST, model_dir=str(model_dir), checkpoint=10)
    other = tmp_path / "other"  # Rewritten (a trainer started over): other content under the same name.
    train.run(task="digits", task_config={**FAST, "learning_rate": 0.01}, model_dir=str(other), train_steps=10,
              steps_per_loop=10, checkpoint_interval=10)
    for f in other.glob("ckpt-10.*"):
        (model_dir / f.name).write_bytes(f.read_bytes())
    with pytest.raises(checks.InputError, match=(
            r"cannot be evaluated as 'evaluate': step 10 already has a record of another checkpoint .*it was "
            r"rewritten after it was evaluated\). Records are never rewritten, so nothing was evaluated or recorded")):
        evaluate.run(task="digits", task_config=FAST, model_dir=str(model_dir), checkpoint=10)
