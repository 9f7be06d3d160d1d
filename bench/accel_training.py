"""Worker side of the accelerators part: one training configuration of a small convolutional model.

A configuration is a loop (`controller`: `controller_core.Controller` over tfpipe's generic `KerasTrainer`, what
the train component runs; `raw`: the same trainer's `tf.function` loop called directly, no controller;
`keras`: `tf_keras.Model.fit` on the same model, loss and data), a precision (`float32`, `mixed_float16`,
`mixed_bfloat16`: the train component's `precision`) and XLA on or off (`jit_compile`). Every configuration
starts from the same weights (seeded) and reads the same batches in the same order, so their loss curves can be
compared step for step.

The data: scikit-learn's bundled digits (no download), upscaled from 8x8 to `image_size` pixels, batched from a
seeded shuffle.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

NUM_CLASSES = 10


def describe(settings: Dict[str, Any]) -> str:
    """One line describing the model of `settings`."""
    return (f"conv {settings['image_size']}x{settings['image_size']}x1 → Conv2D {settings['filters']} (3x3, relu) → "
            f"Conv2D {2 * settings['filters']} (3x3, stride 2, relu) → GlobalAveragePooling → Dense 10; batch "
            f"{settings['batch_size']}, Adam(1e-3), sklearn digits upscaled, seed 0")


class AccelTraining:
    """Builds one configuration in this process (its dtype policy and XLA setting stay here)."""

    def __init__(self, *, loop: str, precision: str, jit_compile: bool, image_size: int, filters: int,
                 batch_size: int, check_steps: int, check_every: int) -> None:
        import numpy as np
        import tensorflow as tf
        import tf_keras

        import tfpipe.controller_core as orbit
        from tfpipe.components.common import precision as precision_lib
        from tfpipe.components.tasks import Task
        from tfpipe.components.tasks.keras_runners import KerasTrainer

        from bench.digits import digits_arrays

        self.loop = loop
        x, y, self.data_source = digits_arrays(0)
        images = tf.image.resize(tf.reshape(x, [-1, 8, 8, 1]), [image_size, image_size]).numpy().astype(np.float32)

        def dataset(context: Any = None) -> tf.data.Dataset:
            ds = tf.data.Dataset.from_tensor_slices((images, y)).cache()
            return ds.shuffle(2048, seed=0, reshuffle_each_iteration=True).repeat().batch(
                batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        tf_keras.utils.set_random_seed(0)
        with precision_lib.policy_scope(precision):
            model = tf_keras.Sequential([
                tf_keras.layers.Input((image_size, image_size, 1)),
                tf_keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                tf_keras.layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu"),
                tf_keras.layers.GlobalAveragePooling2D(),
                tf_keras.layers.Dense(NUM_CLASSES),
            ])
            optimizer = tf_keras.optimizers.Adam(1e-3)
            loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            if loop == "keras":  # Keras wraps the optimizer in its own LossScaleOptimizer for mixed_float16.
                model.compile(optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              jit_compile=jit_compile, steps_per_execution=check_every)
                self._fit_data = dataset()
        self.model = model
        if loop == "keras":
            self.check_losses = self._keras_losses(check_steps, check_every)
            return
        task = Task(name="bench-conv", model=model, optimizer=optimizer, train_dataset=dataset,
                    eval_dataset=dataset, loss=loss, global_batch_size=batch_size)
        strategy = tf.distribute.get_strategy()
        self.trainer = KerasTrainer(task, strategy, precision=precision, jit_compile=jit_compile)
        self.global_step = task.global_step
        self._steps_per_loop = check_every
        self.controller = orbit.Controller(global_step=task.global_step, trainer=self.trainer,
                                           steps_per_loop=lambda step: self._steps_per_loop,
                                           ) if loop == "controller" else None
        self.check_losses = self._losses(check_steps, check_every)

    def _losses(self, steps: int, every: int) -> List[float]:
        """Trains `steps` steps in loops of `every`; the mean loss of each loop (the correctness curve)."""
        import tensorflow as tf

        losses = []
        for _ in range(steps // every):
            output = self.trainer.train(tf.constant(every, tf.int32))
            losses.append(float(output["loss"]))
        return losses

    def _keras_losses(self, steps: int, every: int) -> List[float]:
        import tf_keras

        class Record(tf_keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.losses: List[float] = []

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.losses.append(float(logs["loss"]))

        record = Record()
        self.model.fit(self._fit_data, steps_per_epoch=every, epochs=steps // every, verbose=0, callbacks=[record])
        return record.losses

    @property
    def setup_answer(self) -> Dict[str, Any]:
        return {"data": self.data_source, "check_losses": self.check_losses}

    def train(self, steps: int, steps_per_loop: int) -> Dict[str, Any]:
        """Trains `steps` more steps; steps/s over the whole call (loops, and the controller's work)."""
        import tensorflow as tf

        t0 = time.perf_counter()
        if self.loop == "keras":
            self.model.fit(self._fit_data, steps_per_epoch=steps, epochs=1, verbose=0)
        elif self.loop == "raw":
            done = 0
            while done < steps:
                n = min(steps_per_loop, steps - done)
                self.trainer.train(tf.constant(n, tf.int32))
                done += n
            float(self.global_step.numpy())  # Wait for the device.
        else:
            self._steps_per_loop = steps_per_loop
            self.controller.train(int(self.global_step.numpy()) + steps, checkpoint_at_completion=False)
        seconds = time.perf_counter() - t0
        return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}
