"""A regression task: a small MLP fits a smooth function of four inputs (synthetic data, nothing downloaded).

Used as `--task curvefit.task:build`: the factory takes the task config dict and returns a
`tfpipe.components.tasks.Task`, modelled on tfpipe's built-in `digits` task. It is not a classifier (no
`class_names`), so the components report regression metrics (`mae`, `rmse`) and no confusion matrix; pick the
best checkpoint with `best_metric="mae", best_mode="lower"` and gate the export with e.g. `{"mae": "<= 0.3"}`.
"""

import dataclasses
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from tfpipe.components.tasks import Task, config_from_dict

NUM_FEATURES = 4


@dataclasses.dataclass
class CurveFitConfig:
    """Config of the `curvefit` task; every key is optional.

    Attributes:
        batch_size: Global batch size for training and evaluation.
        learning_rate: Adam's learning rate.
        hidden_units: Width of the two hidden layers.
        num_examples: Examples generated (a fifth are held out for evaluation).
        noise: Standard deviation of the Gaussian noise added to the targets.
        seed: Seed for the data, the weights and the shuffle order.
    """

    batch_size: int = 64
    learning_rate: float = 0.01
    hidden_units: int = 32
    num_examples: int = 2000
    noise: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        for key in ("batch_size", "hidden_units", "num_examples"):
            if getattr(self, key) < 1:
                raise ValueError(f"`task_config[{key!r}]` must be a positive integer, got {getattr(self, key)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`task_config['learning_rate']` must be > 0, got {self.learning_rate}.")
        if self.noise < 0:
            raise ValueError(f"`task_config['noise']` must be >= 0, got {self.noise}.")


def target(x: np.ndarray) -> np.ndarray:
    """The function to fit: y = sin(pi x0) + x1 x2 - x3 / 2."""
    return np.sin(np.pi * x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3]


def build(config_dict: Dict[str, Any]) -> Task:
    """The `curvefit` task factory (called by tfpipe inside the distribution strategy's scope).

    Args:
        config_dict: Keys of `CurveFitConfig` (all optional).
    """
    config = config_from_dict(CurveFitConfig, config_dict, task="curvefit")
    rng = np.random.default_rng(config.seed)
    x = rng.uniform(-1.0, 1.0, size=(config.num_examples, NUM_FEATURES)).astype(np.float32)
    y = (target(x) + rng.normal(0.0, config.noise, size=config.num_examples)).astype(np.float32)[:, None]
    n_eval = max(1, config.num_examples // 5)
    train = tf.data.Dataset.from_tensor_slices((x[n_eval:], y[n_eval:]))
    evaluation = tf.data.Dataset.from_tensor_slices((x[:n_eval], y[:n_eval]))

    def per_pipeline(ds: tf.data.Dataset, context: Optional[tf.distribute.InputContext]):
        if context is None:
            return ds, config.batch_size
        shard = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
        return shard, context.get_per_replica_batch_size(config.batch_size)

    def train_dataset(context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        ds, batch = per_pipeline(train, context)
        ds = ds.cache().shuffle(4096, seed=config.seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        ds, batch = per_pipeline(evaluation, context)
        return ds.cache().batch(batch).prefetch(tf.data.AUTOTUNE)

    tf_keras.utils.set_random_seed(config.seed)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input(shape=(NUM_FEATURES,), name="x"),
            tf_keras.layers.Dense(config.hidden_units, activation="tanh"),
            tf_keras.layers.Dense(config.hidden_units, activation="tanh"),
            tf_keras.layers.Dense(1, name="y"),
        ],
        name="curvefit",
    )

    @tf.function(input_signature=[tf.TensorSpec([None, NUM_FEATURES], tf.float32, name="x")])
    def serve(features: tf.Tensor) -> Dict[str, tf.Tensor]:
        return {"y": model(features, training=False)}

    return Task(
        name="curvefit",
        model=model,
        optimizer=tf_keras.optimizers.Adam(config.learning_rate),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=tf_keras.losses.MeanSquaredError(reduction="none"),
        metrics=lambda: [tf_keras.metrics.MeanAbsoluteError("mae"), tf_keras.metrics.RootMeanSquaredError("rmse")],
        serving_signature=serve,
        global_batch_size=config.batch_size,
    )
