"""A deterministic trainer in its own process, for preemption tests.

    python -m tests.support.preempt_worker --model_dir=DIR --steps=200 [--loop_sleep=0.05]

Trains a small MLP on seeded random data, shuffled every epoch, with the data
iterator in the checkpoint and op determinism on, under a TerminationWatcher:
SIGTERM makes it save at the current step and exit with status 143.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import tfpipe.controller_core as orbit  # noqa: E402


class Mlp(orbit.StandardTrainer):
    def __init__(self, loop_sleep: float) -> None:
        tf_keras.utils.set_random_seed(7)
        rng = np.random.default_rng(7)
        x = rng.normal(size=(200, 8)).astype(np.float32)
        y = (x @ rng.normal(size=(8, 1))).astype(np.float32)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(200, seed=7, reshuffle_each_iteration=True)
        self.model = tf_keras.Sequential([tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(1)])
        self.model.build((None, 8))
        self.optimizer = tf_keras.optimizers.Adam(0.01)
        self.loss = tf_keras.metrics.Mean("loss")
        self.loop_sleep = loop_sleep
        super().__init__(ds.repeat().batch(16))

    def train_loop_begin(self):
        self.loss.reset_state()

    def train_step(self, iterator):
        x, y = next(iterator)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self.model(x) - y))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        self.loss.update_state(loss)

    def train_loop_end(self):
        time.sleep(self.loop_sleep)
        return {"loss": self.loss.result()}


def main(argv: list) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--loop_sleep", type=float, default=0.0)
    args = parser.parse_args(argv)
    tf.config.experimental.enable_op_determinism()
    trainer = Mlp(args.loop_sleep)
    checkpoint = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer,
                                     train_iterator=trainer.train_iterator)
    manager = tf.train.CheckpointManager(checkpoint, args.model_dir, max_to_keep=None,
                                         step_counter=trainer.optimizer.iterations, checkpoint_interval=50)
    with orbit.preemption.TerminationWatcher() as watcher:
        controller = orbit.Controller(global_step=trainer.optimizer.iterations, trainer=trainer, steps_per_loop=5,
                                      checkpoint_manager=manager, termination_watcher=watcher)
        controller.train(args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
