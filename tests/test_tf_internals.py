"""The TensorFlow internals controller_core reads, checked against the installed TensorFlow.

A TensorFlow upgrade fails here first: check each internal on the new version, then add it to
`tf_internals.VERIFIED_TF_VERSIONS`.
"""

import tensorflow as tf

from tfpipe.controller_core import tf_internals
from tests.support.tiny_runners import TinyModel


def test_installed_tensorflow_is_a_verified_version():
    major_minor = ".".join(tf.__version__.split(".")[:2])
    assert major_minor in tf_internals.VERIFIED_TF_VERSIONS, (
        f"TensorFlow {tf.__version__}: check tfpipe.controller_core.tf_internals against it, then add "
        f"{major_minor!r} to VERIFIED_TF_VERSIONS."
    )


def test_checkpoint_manager_internals(tmp_path):
    def init_fn():
        pass

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), str(tmp_path), max_to_keep=1,
                                         checkpoint_name="model", init_fn=init_fn)
    assert manager._checkpoint_prefix == f"{tmp_path}/model"  # The attribute itself, not the fallback.
    assert tf_internals.checkpoint_prefix(manager) == f"{tmp_path}/model"
    assert manager._init_fn is init_fn
    assert tf_internals.checkpoint_init_fn(manager) is init_fn
    assert tf_internals.checkpoint_init_fn(tf.train.CheckpointManager(tf.train.Checkpoint(), str(tmp_path), 1)) is None
    # The prefix is where the manager really saves.
    assert manager.save().startswith(f"{tmp_path}/model-")


def test_a_checkpoint_write_can_be_intercepted(tmp_path):
    """`CheckpointManager.save` writes through the hook, with the manager's state-file callback in `options`."""
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(3.0)), str(tmp_path), max_to_keep=1)
    seen = []

    def around(write, file_prefix, options):
        quiet = tf.train.CheckpointOptions()
        written = write(str(tmp_path / "elsewhere" / "ckpt"), quiet)  # Written where the hook says; no callbacks.
        assert (tmp_path / "checkpoint").exists() == bool(seen)  # The state file comes from the callbacks only.
        seen.append((file_prefix, written, list(options.experimental_write_callbacks)))
        tf.train.Checkpoint(v=tf.Variable(3.0)).write(file_prefix)
        tf_internals.run_write_callbacks(options, file_prefix)  # The manager's: the state file, max_to_keep.
        return file_prefix

    tf_internals.intercept_checkpoint_write(manager, around)
    path = manager.save()
    assert path == f"{tmp_path}/ckpt-1" and manager.latest_checkpoint == path
    [(prefix, written, callbacks)] = seen
    assert prefix == path and written == f"{tmp_path}/elsewhere/ckpt" and len(callbacks) == 1
    assert tf.train.get_checkpoint_state(str(tmp_path)).model_checkpoint_path == path
    assert tf.train.load_variable(written, "v/.ATTRIBUTES/VARIABLE_VALUE") == 3.0
    names = [name for name, _ in tf.train.list_variables(written)]
    assert names == ["_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE",
                     "v/.ATTRIBUTES/VARIABLE_VALUE"]  # The hook is not a tracked child.
    manager.save()
    assert manager.checkpoints == [f"{tmp_path}/ckpt-2"] and not tf.io.gfile.exists(f"{path}.index")


def test_unmatched_variables_parses_assert_existing_objects_matched(tmp_path):
    path = tf.train.Checkpoint(model=TinyModel()).write(str(tmp_path / "small"))
    wider = TinyModel(extra_layer=True)
    status = tf.train.Checkpoint(model=wider).read(path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        count, names = tf_internals.unmatched_variables(error)
    else:
        raise AssertionError("TensorFlow no longer raises for variables missing from the checkpoint")
    assert count == 2
    assert names == sorted(v.name for v in wider.extra.weights)


def test_unmatched_variables_count_beyond_the_ten_shown(tmp_path):
    path = tf.train.Checkpoint().write(str(tmp_path / "empty"))
    variables = [tf.Variable(float(i), name=f"v{i:02d}") for i in range(12)]
    status = tf.train.Checkpoint(variables=variables).read(path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        count, names = tf_internals.unmatched_variables(error)
    assert count == 12 and len(names) == 10
