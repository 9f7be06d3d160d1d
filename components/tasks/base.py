"""What a task is: everything the generic Keras runners need to train, evaluate and serve a model."""

import dataclasses
from typing import Any, Callable, List, Optional, Sequence

import tensorflow as tf

import tfpipe.controller_core as orbit

DatasetFn = Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]


@dataclasses.dataclass
class Task:
    """A model with its data, loss and metrics, as returned by a task factory.

    Task factories are called inside the distribution strategy's scope, so the
    model and optimizer variables they create are distributed.

    Attributes:
        name: The task's name (the registered name or `module:factory`).
        model: A `tf_keras.Model` (built, or built by its first call).
        optimizer: A `tf_keras` optimizer; its `iterations` is the global step.
        train_dataset: `fn(input_context) -> tf.data.Dataset` of `(features,
            labels)` batches, repeated; batched per replica from the context.
        eval_dataset: Like `train_dataset`, finite (one pass is one evaluation).
        loss: `fn(labels, predictions)` returning per-example losses.
        metrics: Returns fresh `tf_keras.metrics.Metric` objects (called once for
            training and once for evaluation).
        serving_signature: A `tf.function` with an input signature, wrapping the
            model for serving; exported as `serving_default`.
        class_names: For classifiers: the names of the classes, in label order.
        global_batch_size: The global batch size, for loss scaling.
        trainer: Optionally, an Orbit-style trainer to run instead of the
            generic Keras trainer.
        evaluator: Optionally, an Orbit-style evaluator to run instead of the
            generic Keras evaluator.
        checkpoint_items: Extra trackables to checkpoint with the model.
    """

    name: str
    model: Any
    optimizer: Any
    train_dataset: DatasetFn
    eval_dataset: DatasetFn
    loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    metrics: Callable[[], List[Any]]
    serving_signature: Optional[Callable[..., Any]] = None
    class_names: Optional[Sequence[str]] = None
    global_batch_size: Optional[int] = None
    trainer: Optional[orbit.AbstractTrainer] = None
    evaluator: Optional[orbit.AbstractEvaluator] = None
    checkpoint_items: dict = dataclasses.field(default_factory=dict)

    @property
    def global_step(self) -> tf.Variable:
        """The global step: the optimizer's iteration counter."""
        return self.optimizer.iterations

    @property
    def is_classifier(self) -> bool:
        """Whether the task has class names (and so a confusion matrix)."""
        return bool(self.class_names)
