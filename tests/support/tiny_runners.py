"""Tiny Keras runners for controller tests: a Dense layer learning zeros -> ones."""

import time
from typing import Optional

import tensorflow as tf
import tf_keras

import tfpipe.controller_core as orbit


def tiny_dataset(repeat: bool = True, batch: int = 2) -> tf.data.Dataset:
    """Ten examples of zeros(3) -> ones(4), batched; repeated forever by default."""
    ds = tf.data.Dataset.from_tensor_slices((tf.zeros([10, 3]), tf.ones([10, 4])))
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch, drop_remainder=True)


class TinyModel(tf_keras.Model):
    """One Dense(4) layer, built eagerly so checkpoints can be checked on restore."""

    def __init__(self, extra_layer: bool = False) -> None:
        super().__init__()
        self.dense = tf_keras.layers.Dense(4, kernel_initializer="zeros")
        self.extra = tf_keras.layers.Dense(4) if extra_layer else None
        self(tf.zeros([1, 3]))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        y = self.dense(x)
        return self.extra(y) if self.extra is not None else y


class TinyRunner(orbit.StandardTrainer, orbit.StandardEvaluator):
    """Trainer and evaluator in one, as in Orbit's own tests."""

    def __init__(
        self,
        *,
        train_options: Optional[orbit.StandardTrainerOptions] = None,
        eval_options: Optional[orbit.StandardEvaluatorOptions] = None,
        eval_dataset: Optional[tf.data.Dataset] = None,
        model: Optional[tf_keras.Model] = None,
        eval_sleep: float = 0.0,
        nested_output: bool = False,
    ) -> None:
        self.strategy = tf.distribute.get_strategy()
        self.model = model or TinyModel()
        self.optimizer = tf_keras.optimizers.SGD(0.1)
        self.global_step = self.optimizer.iterations
        self.train_loss = tf_keras.metrics.Mean("loss")
        self.eval_loss = tf_keras.metrics.Mean("eval_loss")
        self.eval_examples = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.eval_sleep = eval_sleep
        self.nested_output = nested_output
        orbit.StandardTrainer.__init__(self, tiny_dataset(), options=train_options)
        orbit.StandardEvaluator.__init__(
            self, eval_dataset if eval_dataset is not None else tiny_dataset(), options=eval_options
        )

    def checkpoint(self, with_optimizer: bool = True) -> tf.train.Checkpoint:
        if with_optimizer:
            return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        return tf.train.Checkpoint(model=self.model)

    def train_loop_begin(self) -> None:
        self.train_loss.reset_state()

    def train_step(self, iterator) -> None:
        def step(inputs):
            x, y = inputs
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(y - self.model(x)))
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            self.train_loss.update_state(loss)

        self.strategy.run(step, args=(next(iterator),))

    def train_loop_end(self):
        if self.nested_output:
            return {"metrics": {"loss": self.train_loss.result()}}
        return {"loss": self.train_loss.result()}

    def eval_begin(self) -> None:
        self.eval_loss.reset_state()
        self.eval_examples.assign(0)

    def eval_step(self, iterator) -> None:
        def step(inputs):
            x, y = inputs
            self.eval_loss.update_state(tf.reduce_mean(tf.square(y - self.model(x))))
            # Labels are ones: their sum counts examples (a static shape would be constant-folded).
            self.eval_examples.assign_add(tf.cast(tf.reduce_sum(y[:, 0]), tf.int64))

        self.strategy.run(step, args=(next(iterator),))

    def eval_end(self):
        if self.eval_sleep:
            time.sleep(self.eval_sleep)
        return {"eval_loss": self.eval_loss.result()}


class StuckTrainer(orbit.AbstractTrainer):
    """A trainer that never advances the global step."""

    def train(self, num_steps: tf.Tensor):
        return {"loss": tf.constant(1.0)}


class SleepyTrainer(orbit.AbstractTrainer):
    """Advances the global step by `num_steps`, taking `seconds_per_step` each."""

    def __init__(self, global_step: tf.Variable, seconds_per_step: float) -> None:
        self.global_step = global_step
        self.seconds_per_step = seconds_per_step

    def train(self, num_steps: tf.Tensor):
        time.sleep(self.seconds_per_step * int(num_steps))
        self.global_step.assign_add(tf.cast(num_steps, self.global_step.dtype))
        return {"loss": tf.constant(0.5)}


def read_scalars(logdir: str) -> dict:
    """Returns {tag: [(step, value), ...]} from the event files directly in `logdir`."""
    scalars: dict = {}
    for path in sorted(tf.io.gfile.glob(f"{logdir}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((event.step, float(number)))
    return scalars


def checkpoint_steps(directory: str, prefix: str = "ckpt") -> list:
    """Steps of the checkpoints (`<prefix>-N.index`) in `directory`, sorted."""
    return sorted(
        int(p.rsplit("-", 1)[1].split(".")[0]) for p in tf.io.gfile.glob(f"{directory}/{prefix}-*.index")
    )
