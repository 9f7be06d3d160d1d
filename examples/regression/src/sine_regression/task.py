"""The `sine` task: a small MLP fitting y = sin(x) + noise, with mean absolute error as its primary metric.

A complete tfpipe task that is not a classifier. The data is generated from the
seed (nothing is downloaded); `task_config` keys are checked by
`config_from_dict`, and the task declares its primary metric so that the
pipeline picks the best checkpoint by it (lower is better) without flags.
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from tfpipe.components.tasks import Task, config_from_dict, task_factory


@dataclasses.dataclass
class SineConfig:
    """Config of the `sine` task; every key is optional.

    Attributes:
        batch_size: Global batch size.
        learning_rate: Adam's learning rate.
        hidden_units: Width of the two hidden layers.
        noise: Standard deviation of the noise added to the targets.
        samples: Training samples (the evaluation set is a quarter of that).
        seed: Seed for the data, the weights and the shuffle order.
    """

    batch_size: int = 32
    learning_rate: float = 0.01
    hidden_units: int = 32
    noise: float = 0.05
    samples: int = 1024
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.batch_size <= 4096:
            raise ValueError(f"`task_config['batch_size']` must be from 1 to 4096, got {self.batch_size}.")
        if not 0 < self.learning_rate < 10:
            raise ValueError(f"`task_config['learning_rate']` must be in (0, 10), got {self.learning_rate}.")
        if not 16 <= self.samples <= 10**6:
            raise ValueError(f"`task_config['samples']` must be from 16 to 1000000, got {self.samples}.")


def _data(config: SineConfig, n: int, offset: int) -> tf.data.Dataset:
    rng = np.random.default_rng(config.seed + offset)
    x = rng.uniform(-np.pi, np.pi, size=(n, 1)).astype(np.float32)
    y = (np.sin(x) + rng.normal(0, config.noise, size=(n, 1))).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y))


@task_factory
def build(config_dict: Dict[str, Any]) -> Task:
    """The `sine` task factory (called inside the distribution strategy's scope)."""
    config = config_from_dict(SineConfig, config_dict, task="sine")
    train, evaluation = _data(config, config.samples, 0), _data(config, config.samples // 4, 1)

    def train_dataset(context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        batch = context.get_per_replica_batch_size(config.batch_size) if context else config.batch_size
        ds = train.shard(context.num_input_pipelines, context.input_pipeline_id) if context else train
        return ds.cache().shuffle(1024, seed=config.seed).repeat().batch(batch, drop_remainder=True)

    def eval_dataset(context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        batch = context.get_per_replica_batch_size(config.batch_size) if context else config.batch_size
        return evaluation.batch(batch)

    tf_keras.utils.set_random_seed(config.seed)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(1,), name="x"),
        tf_keras.layers.Dense(config.hidden_units, activation="tanh"),
        tf_keras.layers.Dense(config.hidden_units, activation="tanh"),
        tf_keras.layers.Dense(1, name="y"),
    ], name="sine")

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {"y": model(x, training=False)}

    return Task(
        name="sine",
        model=model,
        optimizer=tf_keras.optimizers.Adam(config.learning_rate),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=tf_keras.losses.MeanSquaredError(reduction="none"),
        metrics=lambda: [tf_keras.metrics.MeanAbsoluteError("mae")],
        serving_signature=serve,
        global_batch_size=config.batch_size,
        best_metric="mae",
        best_mode="lower",
        config=dataclasses.asdict(config),
        eval_only_config_keys=("batch_size",),
    )
