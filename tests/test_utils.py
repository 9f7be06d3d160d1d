"""tfpipe.controller_core.utils: global step, datasets, epochs, loop functions, summaries."""

import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.controller_core.utils import loop_fns
from tests.support.tiny_runners import read_scalars


def test_create_global_step():
    step = orbit.utils.create_global_step()
    assert step.dtype == tf.int64 and not step.trainable and int(step.numpy()) == 0
    assert step.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA


def test_get_value():
    assert orbit.utils.get_value(tf.constant(3.0)) == 3.0
    assert orbit.utils.get_value(tf.Variable(2)) == 2
    assert orbit.utils.get_value("text") == "text"


def test_make_distributed_dataset_from_dataset_and_functions():
    strategy = tf.distribute.get_strategy()
    ds = tf.data.Dataset.range(4).batch(2)
    assert [list(b.numpy()) for b in orbit.utils.make_distributed_dataset(strategy, ds)] == [[0, 1], [2, 3]]

    contexts = []

    def with_context(n, input_context=None):
        contexts.append(input_context)
        return tf.data.Dataset.range(n)

    dist = orbit.utils.make_distributed_dataset(None, with_context, 3)
    assert [int(x.numpy()) for x in dist] == [0, 1, 2]
    assert isinstance(contexts[0], tf.distribute.InputContext)
    dist = orbit.utils.make_distributed_dataset(None, lambda n: tf.data.Dataset.range(n), n=2)
    assert [int(x.numpy()) for x in dist] == [0, 1]
    with pytest.raises(ValueError, match=r"`dataset_or_fn` must be a tf.data.Dataset or a callable.*got int: 5"):
        orbit.utils.make_distributed_dataset(None, 5)


def test_epoch_helper():
    step = tf.Variable(0, dtype=tf.int64)
    helper = orbit.utils.EpochHelper(epoch_steps=4, global_step=step)
    with pytest.raises(ValueError, match=r"`epoch_end` can only be called inside an epoch"):
        helper.epoch_end()
    assert helper.epoch_begin() and helper.current_epoch == 0
    assert not helper.epoch_begin()  # Already in an epoch.
    step.assign(3)
    assert helper.batch_index == 3 and not helper.epoch_end()
    step.assign(4)
    assert helper.epoch_end()
    assert helper.epoch_begin() and helper.current_epoch == 1 and helper.batch_index == 0
    with pytest.raises(ValueError, match=r"`epoch_steps` \(0\) must be a positive integer"):
        orbit.utils.EpochHelper(0, step)


def test_create_loop_fn_fixed_steps_until_exhausted_and_state():
    calls = []
    loop = orbit.utils.create_loop_fn(lambda it: calls.append(next(it)))
    it = iter(range(10))
    loop(it, tf.constant(3))
    assert calls == [0, 1, 2]
    loop(it, -1)  # Runs until the iterator is exhausted.
    assert calls == list(range(10))

    summing = orbit.utils.create_loop_fn(lambda it: next(it))
    total = summing(iter(tf.data.Dataset.range(5)), -1, state=0, reduce_fn=lambda s, x: s + int(x))
    assert total == 10


def test_create_tf_while_loop_fn():
    v = tf.Variable(0, dtype=tf.int64)

    def step(it):
        v.assign_add(next(it))

    loop = tf.function(orbit.utils.create_tf_while_loop_fn(step))
    loop(iter(tf.data.Dataset.range(100)), tf.constant(4))
    assert int(v.numpy()) == 0 + 1 + 2 + 3
    with pytest.raises(ValueError, match=r"`num_steps` must be a `tf.Tensor`, got int \(4\)"):
        orbit.utils.create_tf_while_loop_fn(step)(iter([]), 4)


def test_create_tf_while_loop_fn_with_state_allows_growing_state():
    loop = tf.function(orbit.utils.create_tf_while_loop_fn_with_state(lambda it: next(it)))
    state = loop(
        iter(tf.data.Dataset.range(10)), tf.constant(4),
        state=tf.zeros([0], tf.int64), reduce_fn=lambda s, x: tf.concat([s, [x]], 0),
    )
    assert list(state.numpy()) == [0, 1, 2, 3]


def test_optional_summaries_function_dispatches_on_recording(tmp_path):
    traced = []

    def fn(x):
        traced.append(tf.summary.should_record_summaries())
        tf.summary.scalar("x", x, step=0)
        return x

    opt = orbit.utils.OptionalSummariesFunction(fn)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        with tf.summary.record_if(True):
            opt(tf.constant(1.0))
        with tf.summary.record_if(False):
            opt(tf.constant(2.0))
    writer.flush()
    assert [v for _, v in read_scalars(str(tmp_path))["x"]] == [1.0]

    class Holder:
        @orbit.utils.OptionalSummariesFunction
        def double(self, x):
            return 2 * x

    assert float(Holder().double(tf.constant(2.0))) == 4.0


def test_loop_fn_with_summaries_records_first_step_only(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)

    def body(it):
        step.assign_add(1)
        tf.summary.scalar("s", tf.cast(step, tf.float32), step=step)

    loop = loop_fns.LoopFnWithSummaries(orbit.utils.create_tf_while_loop_fn(body))
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(), tf.summary.record_if(True):
        loop(iter([]), tf.constant(5))
    writer.flush()
    assert int(step.numpy()) == 5
    (tag,) = read_scalars(str(tmp_path)).keys()
    assert [s for s, _ in read_scalars(str(tmp_path))[tag]] == [1]


def test_summary_manager_nested_and_noop(tmp_path):
    step = tf.Variable(7, dtype=tf.int64)
    manager = orbit.utils.SummaryManager(str(tmp_path), tf.summary.scalar, global_step=step)
    manager.write_summaries({"loss": 1.5, "eval": {"acc": 0.5, "deeper": {"x": 2.0}}})
    manager.flush()
    assert read_scalars(str(tmp_path)) == {"loss": [(7, 1.5)]}
    assert read_scalars(str(tmp_path / "eval")) == {"acc": [(7, 0.5)]}
    assert read_scalars(str(tmp_path / "eval" / "deeper")) == {"x": [(7, 2.0)]}

    noop = orbit.utils.SummaryManager(None, tf.summary.scalar)
    noop.write_summaries({"loss": 1.0})
    noop.flush()
    assert isinstance(noop, orbit.utils.SummaryManagerInterface)
