"""A user task that brings its own Orbit-style trainer and evaluator (referenced as `module:build`)."""

import tensorflow as tf
import tf_keras

from tfpipe.components.tasks import Task, task_factory
from tests.support.tiny_runners import TinyModel, TinyRunner, tiny_dataset


@task_factory
def build(config: dict) -> Task:
    if set(config) - {"scale"}:
        raise ValueError(f"`task_config` has unknown key(s) {sorted(set(config) - {'scale'})}; accepted: ['scale'].")
    runner = TinyRunner(model=TinyModel(), eval_dataset=tiny_dataset(repeat=False))
    runner.optimizer = tf_keras.optimizers.SGD(0.1 * config.get("scale", 1.0))
    runner.global_step = runner.optimizer.iterations
    serve = tf.function(lambda x: {"y": runner.model(x)}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    return Task(
        name="custom", model=runner.model, optimizer=runner.optimizer,
        train_dataset=lambda ctx=None: tiny_dataset(), eval_dataset=lambda ctx=None: tiny_dataset(repeat=False),
        loss=lambda y, p: tf.reduce_mean(tf.square(y - p), axis=-1), metrics=lambda: [],
        serving_signature=serve, trainer=runner, evaluator=runner,
    )
