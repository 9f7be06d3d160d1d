"""tfpipe.controller_core.standard_runner: loops built from one step, under every option."""

import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tests.support.tiny_runners import TinyRunner, tiny_dataset


@pytest.mark.parametrize(
    "options",
    [
        orbit.StandardTrainerOptions(),
        orbit.StandardTrainerOptions(use_tf_while_loop=False),
        orbit.StandardTrainerOptions(use_tf_while_loop=False, use_tf_function=False),
        orbit.StandardTrainerOptions(use_tpu_summary_optimization=True),
    ],
    ids=["while_loop", "tf_function_step", "eager", "tpu_summaries"],
)
def test_trainer_options_all_train(options):
    runner = TinyRunner(train_options=options)
    output = runner.train(tf.constant(6))
    assert int(runner.global_step.numpy()) == 6 and float(output["loss"]) < 1.0
    runner.train(tf.constant(2))  # The iterator persists across loops.
    assert int(runner.global_step.numpy()) == 8


@pytest.mark.parametrize(
    "options",
    [
        orbit.StandardEvaluatorOptions(),
        orbit.StandardEvaluatorOptions(use_tf_function=False),
        orbit.StandardEvaluatorOptions(use_tf_while_loop=True),
    ],
    ids=["tf_function_step", "eager", "while_loop"],
)
def test_evaluator_options_all_evaluate(options):
    runner = TinyRunner(eval_options=options)
    output = runner.evaluate(tf.constant(3))
    assert float(output["eval_loss"]) == pytest.approx(1.0) and int(runner.eval_examples.numpy()) == 6


def test_evaluator_continues_iterator_when_not_recreated():
    ds = tf.data.Dataset.range(6).batch(1)

    class Counter(orbit.StandardEvaluator):
        def __init__(self, options):
            self.seen = []
            super().__init__(ds, options)

        def eval_step(self, iterator):
            return next(iterator)

        def eval_begin(self):
            return tf.zeros([0], tf.int64)

        def eval_reduce(self, state=None, step_outputs=None):
            return tf.concat([state, step_outputs], 0)

        def eval_end(self, state):
            return {"seen": state}

    fresh = Counter(orbit.StandardEvaluatorOptions())
    assert list(fresh.evaluate(tf.constant(2))["seen"].numpy()) == [0, 1]
    assert list(fresh.evaluate(tf.constant(2))["seen"].numpy()) == [0, 1]
    cont = Counter(orbit.StandardEvaluatorOptions(recreate_iterator_for_each_eval=False))
    assert list(cont.evaluate(tf.constant(2))["seen"].numpy()) == [0, 1]
    assert list(cont.evaluate(tf.constant(2))["seen"].numpy()) == [2, 3]
    while_state = Counter(orbit.StandardEvaluatorOptions(use_tf_while_loop=True))
    assert list(while_state.evaluate(tf.constant(3))["seen"].numpy()) == [0, 1, 2]


def test_setting_dataset_restarts_iteration():
    runner = TinyRunner()
    runner.train(tf.constant(2))
    runner.train_dataset = tiny_dataset()
    assert runner._train_iter is None
    runner.eval_dataset = tiny_dataset()
    assert runner.eval_dataset is not None


def test_option_value_errors():
    with pytest.raises(ValueError, match=r"`use_tf_while_loop=True` requires `use_tf_function=True`"):
        orbit.StandardTrainerOptions(use_tf_function=False)
    with pytest.raises(ValueError, match=r"`use_tpu_summary_optimization=True` requires `use_tf_while_loop=True`"):
        orbit.StandardTrainerOptions(use_tf_while_loop=False, use_tpu_summary_optimization=True)
    with pytest.raises(ValueError, match=r"`use_tf_while_loop=True` requires `use_tf_function=True`"):
        orbit.StandardEvaluatorOptions(use_tf_function=False, use_tf_while_loop=True)
    runner = TinyRunner(eval_options=orbit.StandardEvaluatorOptions(use_tf_while_loop=True))
    with pytest.raises(ValueError, match=r"`num_steps` \(-1\): evaluating until the dataset is exhausted"):
        runner.evaluate(tf.constant(-1))
