"""Tasks with the mistakes the fail-fast probe must catch: a model for 3 features fed 2, and Keras 3 objects."""

import tensorflow as tf
import tf_keras

import tfpipe.controller_core as orbit
from tfpipe.components.tasks import Task, task_factory


def _data(features: int, repeat: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((tf.zeros([16, features]), tf.zeros([16], tf.int64)))
    return (ds.repeat() if repeat else ds).batch(4)


@task_factory
def mismatched(config: dict) -> Task:
    """A classifier built for 3 features whose data has `features` (default 2)."""
    features = int(config.get("features", 2))
    model = tf_keras.Sequential([tf_keras.layers.Input(shape=(3,)), tf_keras.layers.Dense(2)])
    serve = tf.function(lambda x: {"logits": model(x)}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    return Task(
        name="mismatched", model=model, optimizer=tf_keras.optimizers.SGD(0.1),
        train_dataset=lambda ctx=None: _data(features, repeat=True),
        eval_dataset=lambda ctx=None: _data(features, repeat=False),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
        metrics=lambda: [tf_keras.metrics.SparseCategoricalAccuracy("accuracy")],
        serving_signature=serve, global_batch_size=4, best_metric="accuracy", best_mode="higher",
        config={"features": features},
    )


class _Keras3Trainer(orbit.StandardTrainer):
    """An Orbit trainer written as Orbit's docs do, with `keras` (Keras 3 here, as `tf.keras` on TF 2.16+)."""

    def __init__(self) -> None:
        import keras

        self.model = keras.Sequential([keras.layers.Input(shape=(3,)), keras.layers.Dense(1)])
        self.optimizer = keras.optimizers.SGD(0.1)
        self.global_step = self.optimizer.iterations
        super().__init__(_data(3, repeat=True))

    def train_step(self, iterator):  # pragma: no cover - never reached: the task is refused first.
        next(iterator)


@task_factory
def keras3_trainer(config: dict) -> Task:
    """A task handing over a Keras 3 Orbit-style trainer."""
    trainer = _Keras3Trainer()
    return Task(name="keras3", model=trainer.model, trainer=trainer, global_step=trainer.global_step,
                eval_dataset=lambda ctx=None: _data(3, repeat=False), loss=lambda y, p: tf.zeros_like(y, tf.float32))


@task_factory
def breaks_at_step_3(config: dict) -> Task:
    """A task whose train data holds a malformed batch at step 3 (a deterministic failure before any checkpoint)."""
    task = mismatched({"features": 3})

    def train_dataset(ctx=None) -> tf.data.Dataset:
        def check(i, batch):
            tf.debugging.assert_less(i, tf.constant(2, tf.int64), message="malformed record in batch")
            return batch
        return _data(3, repeat=True).enumerate().map(check)

    task.train_dataset = train_dataset
    task.name = "breaks"
    return task
