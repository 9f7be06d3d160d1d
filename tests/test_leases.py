"""One trainer per run directory: the writer lease (`components/common/lease.py`), tried for real.

Two trainer processes on one run directory (a local disk and gs://, the GCS emulator), two with different configs
racing for it, a lapsed, paused or frozen gs:// holder, a skewed clock, a deleted lock file, a directory that cannot
be locked (NFS), bad ttl and wait settings.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.components.common import checkpoints, commits, fenced_saves, gcs, lease, run_config
from tfpipe.controller_core import checkpoint_watcher, run_dir
from tests.support.gcs_faults import TargetedGcsFaults, read_fault_log
from tests.test_reliability import ROOT, _start_trainer, _train


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_two_trainers_on_one_model_dir(where, tmp_path, request):
    if where == "gcs":
        emulator = request.getfixturevalue("gcs_emulator")
        model_dir, env = f"{request.getfixturevalue('gcs_bucket')}/run", {**os.environ, **emulator.env}
    else:
        model_dir, env = str(tmp_path / "run"), dict(os.environ)
    env[lease.WAIT_ENV] = "4"  # The second trainer waits 4 s, then gives up.
    first = _start_trainer(model_dir, 100000, env, "first")
    try:
        deadline = time.monotonic() + 120
        while not checkpoint_watcher.list_checkpoints(model_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Paused while the second trainer runs: it still holds the lease (well inside the default ttl, 120 s), and
        # its training (a checkpoint every 10 steps) leaves the cores to the second.
        first.send_signal(signal.SIGSTOP)
        try:
            second = _start_trainer(model_dir, 100000, env, "second")
            log, _ = second.communicate(timeout=240)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode != 0
        assert "waiting for the writer lease" in log and "Another trainer holds the run directory" in log, log[-2000:]
        assert "Waited 4 s; nothing was written" in log, log[-2000:]
        assert "no checkpoint to restore" not in log and "restoring model" not in log  # It never touched them.
    finally:
        first.terminate()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 143, out[-2000:]  # Preempted: saved at its step and released the lease.
    steps = sorted(checkpoint_watcher.list_checkpoints(model_dir))
    assert steps and steps == sorted(set(steps))
    # The lease is free again: a retry takes it at once and resumes.
    again = _start_trainer(model_dir, steps[-1] + 10, env, "retry")
    log, _ = again.communicate(timeout=240)
    assert again.returncode == 0 and "waiting for the writer lease" not in log, log[-2000:]


def _wait_for(predicate, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_two_trainers_with_different_configs_never_mix_in_one_model(tmp_path):
    """Both pass the early config check (no run config yet) and wait for the lease; the one that gets it second
    compares its config with the first's under the lease and is refused, never restoring the first's checkpoint."""
    model_dir = tmp_path / "run"
    held = lease.WriterLease(str(model_dir)).acquire()  # Makes the race deterministic: both start, then wait.
    procs, logs = {}, {}
    try:
        for rate in (0.01, 0.02):
            logs[rate] = tmp_path / f"lr-{rate}.log"
            flags = ["--task=digits", json.dumps({"batch_size": 32, "learning_rate": rate}).join(
                ["--task_config=", ""]), f"--model_dir={model_dir}", "--train_steps=20", "--steps_per_loop=10",
                     "--checkpoint_interval=10"]
            with open(logs[rate], "w") as log:
                procs[rate] = subprocess.Popen([sys.executable, "-m", "tfpipe.components.train", *flags], cwd=ROOT,
                                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=log,
                                               stderr=subprocess.STDOUT, text=True)
        _wait_for(lambda: all("waiting for the writer lease" in logs[r].read_text() for r in logs),
                  "both trainers to wait for the lease")
    finally:
        held.release()
    for proc in procs.values():
        proc.wait(timeout=300)
    codes = {rate: proc.returncode for rate, proc in procs.items()}
    assert sorted(codes.values()) == [0, 2], {r: logs[r].read_text()[-2000:] for r in logs}
    winner = next(rate for rate, code in codes.items() if code == 0)
    loser = next(rate for rate, code in codes.items() if code == 2)
    recorded = json.loads((model_dir / run_config.RUN_CONFIG).read_text())
    assert recorded["task_config"]["learning_rate"] == winner
    log = logs[loser].read_text()
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"train: `model_dir` ({model_dir}) was trained with another task config") and (
        "learning_rate" in last), log[-2000:]
    assert "Traceback" not in log and "restoring" not in log and "training until" not in log, log[-2000:]
    assert sorted(checkpoint_watcher.list_checkpoints(str(model_dir))) == [10, 20]


def test_a_lapsed_gcs_lease_is_taken_over_and_its_holder_stops(gcs_emulator, gcs_bucket):
    model_dir = f"{gcs_bucket}/lease-{uuid.uuid4().hex[:6]}"
    holder = lease.WriterLease(model_dir, ttl=1, wait=0)
    assert holder._try_acquire() is None  # Held, then never renewed (a pod that froze).
    contender = lease.WriterLease(model_dir, ttl=1, wait=0)
    with pytest.raises(lease.LeaseHeldError, match=r"Another trainer holds the run directory .*nothing was written"):
        contender.acquire()
    time.sleep(1.5)  # The holder's lease lapses by the server's clock: the contender takes it over.
    contender.acquire()
    assert holder.renew() is False  # Its renewal fails the generation precondition...
    with pytest.raises(lease.LeaseLostError, match=r"stopping before writing more"):
        holder.check()  # ...and its next train loop stops before saving.
    assert contender.renew() is True
    contender.release()
    holder.release()


def _fenced_manager(model_dir, writer, during_save=None):
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    manager = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=None)
    if during_save is not None:
        save = manager.save

        def save_with_a_pause(*args, **kwargs):
            during_save()
            return save(*args, **kwargs)

        manager.save = save_with_a_pause
    return fenced_saves.fence_saves(manager, writer)


def test_a_paused_gcs_holder_cannot_save_after_another_took_over(gcs_emulator, gcs_bucket):
    model_dir = f"{gcs_bucket}/paused-{uuid.uuid4().hex[:6]}"
    holder = lease.WriterLease(model_dir, ttl=1, wait=0)
    assert holder._try_acquire() is None  # Acquired; then the process froze (no renewals) past its ttl.
    time.sleep(1.5)
    contender = lease.WriterLease(model_dir, ttl=1, wait=0).acquire()
    with pytest.raises(lease.LeaseLostError, match="stopping before writing more"):
        _fenced_manager(model_dir, holder).save()  # Its lease is checked with the server right before the save.
    assert not tf.io.gfile.glob(f"{model_dir}/ckpt-*")
    contender.release()


def _objects(model_dir, client=None):
    """`{name: (generation, crc32c)}` of the objects under a gs:// run directory (names relative to it), but the
    lease's own (`.tfpipe-writer.*`)."""
    bucket, prefix = gcs.gcs_location(model_dir)
    blobs = (client.bucket(bucket) if client else gcs.bucket(bucket)).list_blobs(prefix=f"{prefix}/")
    return {b.name[len(prefix) + 1:]: (b.generation, b.crc32c) for b in blobs
            if not b.name.startswith(f"{prefix}/.tfpipe-writer.")}


def _staged(objects):
    return [name for name in objects if name.startswith(fenced_saves.STAGING_PREFIX)]


def test_a_holder_frozen_inside_a_save_publishes_nothing(gcs_emulator, gcs_bucket):
    """Frozen past its ttl after the check before the save: TensorFlow's write goes to the holder's own staging
    prefix, and the check before publication stops it. Nothing appears in the run directory: no checkpoint, no
    state file, no staged files left."""
    model_dir = f"{gcs_bucket}/frozen-{uuid.uuid4().hex[:6]}"
    holder = lease.WriterLease(model_dir, ttl=1, wait=0)
    assert holder._try_acquire() is None
    taken = []

    def frozen_past_the_ttl():  # Between the check before the save and its write; another trainer takes over.
        time.sleep(1.5)
        taken.append(lease.WriterLease(model_dir, ttl=1, wait=0).acquire())

    try:
        with pytest.raises(lease.LeaseLostError, match="stopping before writing more"):
            _fenced_manager(model_dir, holder, during_save=frozen_past_the_ttl).save()
        assert not _objects(model_dir)
        assert taken and taken[0].renew() is True  # The new holder keeps the lease.
    finally:
        for new_holder in taken:
            new_holder.release()


def test_a_gcs_save_publishes_the_index_last_and_never_overwrites_a_checkpoint(gcs_emulator, gcs_bucket):
    model_dir = f"{gcs_bucket}/publish-{uuid.uuid4().hex[:6]}"
    writer = lease.WriterLease(model_dir, wait=0).acquire()
    try:
        manager = _fenced_manager(model_dir, writer)
        path = manager.save()
        assert path == f"{model_dir}/ckpt-1" and manager.latest_checkpoint == path
        assert tf.train.get_checkpoint_state(model_dir).model_checkpoint_path == path
        objects = _objects(model_dir)
        data, index = objects["ckpt-1.data-00000-of-00001"], objects["ckpt-1.index"]
        assert data[0] < index[0]  # The index, which makes it a checkpoint for readers, was created last.
        assert not _staged(objects)
        # A data shard without its index (a publication cut short) is replaced; a checkpoint in place never is.
        tf.io.gfile.GFile(f"{model_dir}/ckpt-2.data-00000-of-00001", "wb").write(b"left by a killed publication")
        assert manager.save() == f"{model_dir}/ckpt-2"
        assert tf.train.load_variable(f"{model_dir}/ckpt-2", "v/.ATTRIBUTES/VARIABLE_VALUE") == 1.0
        tf.train.Checkpoint(v=tf.Variable(7.0)).write(f"{model_dir}/ckpt-3")  # Another trainer's, say.
        before = _objects(model_dir)
        with pytest.raises(fenced_saves.CheckpointTakenError, match=r"ckpt-3 is already in place with other content"):
            manager.save()
        assert _objects(model_dir) == before
        assert tf.train.get_checkpoint_state(model_dir).model_checkpoint_path == f"{model_dir}/ckpt-2"
        # What a dead holder left staged is never a checkpoint; the next trainer removes it, under the lease.
        tf.io.gfile.GFile(f"{model_dir}/{fenced_saves.STAGING_PREFIX}dead/ckpt-4.index", "wb").write(b"staged")
        checkpoints.recover_checkpoint_state(model_dir)
        assert not _staged(_objects(model_dir))
    finally:
        writer.release()


def test_a_trainer_stopped_inside_a_gcs_save_never_writes_over_the_one_that_took_over(faulty_gcs, tmp_path):
    """The first trainer is stopped (SIGSTOP) while TensorFlow writes its checkpoint of step 20: the proxy holds
    that upload, so the stop lands inside the save. Past its ttl a second trainer takes the lease over and trains
    to the end. Then the first resumes and its write finishes: it must stop having published nothing, and the
    second's checkpoints, state file and run config stay exactly as they were."""
    faults = tmp_path / "faults.jsonl"
    emulator = faulty_gcs(TargetedGcsFaults([("upload-session", 1, "slow", "ckpt-20")], slow_s=10, log_path=faults))
    bucket = f"stopped-{uuid.uuid4().hex[:8]}"
    emulator.create_bucket(bucket)
    model_dir = f"gs://{bucket}/run"
    env = {**os.environ, **emulator.env, lease.TTL_ENV: "3", "TF_CPP_MIN_LOG_LEVEL": "2"}
    flags = ["--task=digits", '--task_config={"batch_size": 32}', f"--model_dir={model_dir}", "--train_steps=40",
             "--steps_per_loop=10", "--checkpoint_interval=10"]
    command = [sys.executable, "-m", "tfpipe.components.train", *flags]
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: read_fault_log(faults) or first.poll() is not None, "the first trainer's save of step 20")
        first.send_signal(signal.SIGSTOP)
        try:
            assert first.poll() is None, first_log.read_text()[-2000:]
            second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
            assert "took over the lapsed writer lease" in second.stdout, second.stdout[-2000:]
            kept = _objects(model_dir, emulator.client())
        finally:
            first.send_signal(signal.SIGCONT)
        first.wait(timeout=300)
    finally:
        first.kill()
    log = first_log.read_text()
    assert first.returncode != 0 and "LeaseLostError" in log, log[-2000:]
    after = _objects(model_dir, emulator.client())
    written = {name: kept[name] for name in kept if name.startswith(("ckpt-", "checkpoint", "run_config"))}
    assert {"ckpt-20.index", "ckpt-40.index", "checkpoint", "run_config.json"} <= set(written)
    assert {name: after.get(name) for name in written} == written
    assert not {name for name in after if name.startswith("ckpt-")} - set(written) and not _staged(after)
    state = emulator.client().bucket(bucket).blob("run/checkpoint").download_as_text()
    assert state.startswith('model_checkpoint_path: "ckpt-40"'), state


def test_a_skewed_clock_never_takes_over_a_live_gcs_lease(gcs_emulator, gcs_bucket):
    """The contender's clock runs 100 s ahead (patched before tfpipe is imported); the server's clock decides."""
    model_dir = f"{gcs_bucket}/skewed-{uuid.uuid4().hex[:6]}"
    holder = lease.WriterLease(model_dir, ttl=30, wait=0).acquire()
    try:
        script = ("import time; real = time.time; time.time = lambda: real() + 100\n"
                  "from tfpipe.components.common import lease\n"
                  f"lease.WriterLease({model_dir!r}, ttl=30, wait=0).acquire()\n")
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **gcs_emulator.env},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "LeaseHeldError: Another trainer holds the run directory" in out.stderr, (
            out.stdout[-2000:], out.stderr[-2000:])
        holder.check()
        assert holder.renew() is True
    finally:
        holder.release()


def test_a_deleted_lock_file_never_admits_a_second_writer(tmp_path):
    holder = lease.WriterLease(str(tmp_path), wait=0).acquire()
    try:
        os.remove(tmp_path / lease.LOCK_FILE)  # Mid-run, by hand or a cleanup job.
        with pytest.raises(lease.LeaseHeldError, match="Another trainer holds the run directory"):
            lease.WriterLease(str(tmp_path), wait=0).acquire()
        holder.check()  # Still the holder; it says so again in a new lock file.
        assert json.loads((tmp_path / lease.LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(lease.LeaseHeldError, match=f'"pid": {os.getpid()}'):
            lease.WriterLease(str(tmp_path), wait=0).acquire()
    finally:
        holder.release()
    lease.WriterLease(str(tmp_path), wait=0).acquire().release()  # Released: free again.


def test_where_a_directory_cannot_be_locked_a_replaced_lock_file_stops_its_holder(tmp_path, monkeypatch):
    """NFS: the lock is on the lock file; deleting it can admit a second lock, but the first holder stops."""
    import errno
    import fcntl
    import stat

    flock = fcntl.flock

    def no_directory_locks(fd, operation):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return flock(fd, operation)

    monkeypatch.setattr(lease.fcntl, "flock", no_directory_locks)
    holder = lease.WriterLease(str(tmp_path), wait=0).acquire()
    with pytest.raises(lease.LeaseHeldError):
        lease.WriterLease(str(tmp_path), wait=0).acquire()
    os.remove(tmp_path / lease.LOCK_FILE)
    second = lease.WriterLease(str(tmp_path), wait=0).acquire()
    with pytest.raises(lease.LeaseLostError, match="the run directory or its lock was replaced"):
        _fenced_manager(str(tmp_path / "ckpts"), holder).save()
    assert not list((tmp_path / "ckpts").glob("ckpt-*"))
    second.check()
    second.release()
    holder.release()


@pytest.mark.parametrize("variable, value, accepted", [
    *((lease.TTL_ENV, value, "from 1 to 86400") for value in ("abc", "0", "-5", "nan", "1e9")),
    *((lease.WAIT_ENV, value, "from 0 to 86400") for value in ("abc", "-5", "nan", "1e9")),
])
def test_a_bad_lease_setting_is_refused_before_the_task_is_built(tmp_path, monkeypatch, variable, value, accepted):
    monkeypatch.setenv(variable, value)
    built = []
    monkeypatch.setattr(tasks, "build_task", lambda *a, **k: built.append(1))
    with pytest.raises(checks.InputError, match=rf"`\${variable}` \('{value}'\) must be a number of seconds {accepted}"):
        _train(tmp_path / "run", 10)
    assert not built and not (tmp_path / "run").exists()


def test_a_second_trainer_waits_the_ttl_and_a_grace_unless_told(tmp_path, monkeypatch, capsys):
    """By default a preempted pod's retry outwaits the old lease (it lapses within the ttl); 0 fails at once."""
    monkeypatch.delenv(lease.WAIT_ENV, raising=False)
    assert lease.WriterLease(str(tmp_path), ttl=6).wait == 6 + lease.WAIT_GRACE_S
    monkeypatch.setenv(lease.WAIT_ENV, "0")
    holder = lease.WriterLease(str(tmp_path)).acquire()
    try:
        with pytest.raises(lease.LeaseHeldError, match=r"Waited 0 s; nothing was written"):
            lease.WriterLease(str(tmp_path)).acquire()
        assert "waiting for the writer lease" not in capsys.readouterr().out  # It failed at once.
    finally:
        holder.release()


def test_a_bad_lease_ttl_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", "--task=digits", f"--model_dir={tmp_path}/run",
         "--train_steps=10"], cwd=ROOT, env={**os.environ, lease.TTL_ENV: "abc"}, capture_output=True, text=True,
        timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"train: `${lease.TTL_ENV}` ('abc') must be a number of seconds from 1 to 86400 (the writer lease's time "
        "to live; default 120).")
    assert "Traceback" not in out.stderr


def test_create_only_commits_exactly_one_of_two_writers(tmp_path, gcs_bucket):
    for base in (str(tmp_path), gcs_bucket):
        path = f"{base}/commit-{uuid.uuid4().hex[:6]}/marker.json"
        assert commits.create_only(path, {"writer": 1}) is True
        assert commits.create_only(path, {"writer": 2}) is False
        assert run_dir.read_json(path) == {"writer": 1}
