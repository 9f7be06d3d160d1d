"""tfpipe.controller_core.actions: conditions, best-metric tracking, exports, periodic and preemption actions."""

import json
import os
import sys

import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tests.support.tiny_runners import TinyRunner


def test_conditional_action_single_and_sequence():
    calls = []
    orbit.actions.ConditionalAction(lambda o: o["x"] > 1, lambda o: calls.append("a"))({"x": 2})
    orbit.actions.ConditionalAction(lambda o: tf.constant(False), lambda o: calls.append("b"))({"x": 2})
    orbit.actions.ConditionalAction(lambda o: True, [lambda o: calls.append("c"), lambda o: calls.append("d")])({})
    assert calls == ["a", "c", "d"]


def test_new_best_metric_higher_lower_nan_and_nested(tmp_path):
    best = orbit.actions.NewBestMetric("acc")
    assert best.best_value == -sys.float_info.max  # Orbit's starting point.
    assert orbit.actions.NewBestMetric("loss", higher_is_better=False).best_value == sys.float_info.max
    assert best({"acc": tf.constant(0.5)}) and best.best_value == 0.5
    assert not best.commit({"acc": 0.5})  # A tie is not a new best.
    assert best.test({"acc": 0.6}) and best.best_value == 0.5  # test() changes nothing.
    assert not best({"acc": float("nan")})  # NaN never wins.

    lower = orbit.actions.NewBestMetric("eval/loss", higher_is_better=False)
    assert not lower({"eval": {"loss": float("nan")}})  # Not even as the first value.
    assert lower({"eval": {"loss": 2.0}}) and lower({"eval": {"loss": 1.0}}) and not lower({"eval": {"loss": 3.0}})
    with pytest.raises(KeyError, match=r"metric 'eval/acc' is not in the output; available: \['eval/loss'\]"):
        orbit.actions.NewBestMetric("eval/acc").test({"eval": {"loss": 1.0}})

    by_fn = orbit.actions.NewBestMetric(lambda o: o["a"] + o["b"])
    assert by_fn({"a": 1, "b": 2}) and by_fn.best_value == 3.0


def test_new_best_metric_persists_across_restarts(tmp_path):
    path = str(tmp_path / "best.json")
    best = orbit.actions.NewBestMetric("acc", filename=path)
    assert not os.path.exists(path)
    best({"acc": 0.7})
    assert json.load(open(path)) == 0.7
    restarted = orbit.actions.NewBestMetric("acc", filename=path)
    assert restarted.best_value == 0.7 and not restarted.test({"acc": 0.6})
    read_only = orbit.actions.NewBestMetric("acc", filename=path, write_metric=False)
    read_only({"acc": 0.9})
    assert read_only.best_value == 0.9 and json.load(open(path)) == 0.7


def test_new_best_metric_that_wrote_nothing_leaves_orbits_starting_point(tmp_path):
    """Orbit's test_new_best_metric_persistence: a read-only tracker's best stays in memory only."""
    path = str(tmp_path / "best.json")
    read_only = orbit.actions.NewBestMetric("value", filename=path, write_metric=False)
    assert read_only.commit({"value": 0.0}) and not read_only.test({"value": 0.0})
    fresh = orbit.actions.NewBestMetric("value", filename=path)
    assert fresh.best_value < 0.0 and fresh.best_value == -sys.float_info.max
    assert fresh.commit({"value": 5.0}) and orbit.actions.NewBestMetric("value", filename=path).best_value == 5.0


def test_json_persisted_value(tmp_path):
    path = str(tmp_path / "sub" / "value.json")
    value = orbit.actions.JSONPersistedValue({"a": 1}, path)
    assert json.load(open(path)) == {"a": 1}
    value.write({"a": 2})
    assert orbit.actions.JSONPersistedValue({"a": 0}, path).read() == {"a": 2}
    assert not [f for f in os.listdir(tmp_path / "sub") if "tmp" in f]  # No temporaries left.


def test_export_file_manager_numbering_restart_and_clean_up(tmp_path):
    base = str(tmp_path / "exports" / "model")
    manager = orbit.actions.ExportFileManager(base, max_to_keep=2)
    names = []
    for _ in range(3):
        name = manager.next_name()
        tf.io.gfile.makedirs(name)
        names.append(name)
    assert names == [f"{base}-0", f"{base}-1", f"{base}-2"]
    restarted = orbit.actions.ExportFileManager(base, max_to_keep=2)
    assert restarted.next_name() == f"{base}-3"  # Numbering resumes from what is on disk.
    tf.io.gfile.makedirs(f"{base}-7.tmp-deadbeef")  # An interrupted export.
    restarted.clean_up()
    assert restarted.managed_files == [f"{base}-1", f"{base}-2"]
    assert not tf.io.gfile.exists(f"{base}-7.tmp-deadbeef")

    keep_all = orbit.actions.ExportFileManager(base, max_to_keep=-1, subdirectory="saved_model")
    tf.io.gfile.makedirs(f"{base}-9")  # No `saved_model` inside: not a complete export.
    assert keep_all.managed_files == []
    step = tf.Variable(40)
    by_step = orbit.actions.ExportFileManager(base, next_id_fn=step.numpy, subdirectory="saved_model")
    assert by_step.next_name() == f"{base}-40/saved_model"


def test_export_saved_model_is_atomic_and_never_overwrites(tmp_path):
    runner = TinyRunner()
    step = tf.Variable(5)
    manager = orbit.actions.ExportFileManager(str(tmp_path / "m"), max_to_keep=1, next_id_fn=step.numpy)
    serve = tf.function(lambda x: runner.model(x), input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    export = orbit.actions.ExportSavedModel(runner.model, manager, signatures={"serving_default": serve})
    export({})
    path = str(tmp_path / "m-5")
    loaded = tf.saved_model.load(path)
    assert loaded.signatures["serving_default"](x=tf.zeros([2, 3]))["output_0"].shape == (2, 4)
    mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
    export({})  # Same step again: skipped, not overwritten.
    assert os.path.getmtime(os.path.join(path, "saved_model.pb")) == mtime
    step.assign(6)
    export({})
    assert manager.managed_files == [str(tmp_path / "m-6")]  # max_to_keep=1 pruned m-5.
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_periodic_action_fires_when_boundary_crossed():
    step = tf.Variable(0, dtype=tf.int64)
    fired = []
    action = orbit.actions.PeriodicAction(lambda o: fired.append(int(step.numpy())), interval=10, global_step=step)
    for _ in range(11):
        step.assign_add(3)
        action({})
    # Orbit's `step % 10 == 0` would fire only at 30.
    assert fired == [12, 21, 30]
    with pytest.raises(ValueError, match=r"`interval` \(0\) must be a positive integer."):
        orbit.actions.PeriodicAction(lambda o: None, interval=0, global_step=step)


def test_save_checkpoint_if_preempted_without_preemption_saves_nothing(tmp_path):
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path), max_to_keep=2)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(tf.train.ClusterSpec({}), task_type="worker", task_id=0)
    action = orbit.actions.SaveCheckpointIfPreempted(resolver, manager, checkpoint_number=runner.global_step,
                                                     keep_running_after_save=True)
    action({})
    assert tf.io.gfile.glob(f"{tmp_path}/ckpt-*") == []
