"""Generic runners for any `Task`: a `StandardTrainer` and a `StandardEvaluator` over Keras parts.

Both take the step's `precision` (see `tfpipe.components.common.precision`: losses and
metrics in float32, loss scaling for mixed_float16) and `jit_compile`, which
compiles the per-replica step (forward, backward, optimizer update and metric
updates; the input pipeline stays outside) with XLA, as Keras does for
`Model.compile(jit_compile=True)`.
"""

from typing import Any, Callable, Dict, List

import tensorflow as tf
import tf_keras

import tfpipe.controller_core as orbit
from tfpipe.components.common import precision as precision_lib
from tfpipe.components.tasks.base import Task


CONFUSION_MATRIX = "confusion_matrix"
ROC = "roc"
ROC_THRESHOLDS = [i / 50 for i in range(51)]


def _maybe_jit(step_fn: Callable[..., None], jit_compile: bool) -> Callable[..., None]:
    """`step_fn` compiled with XLA when `jit_compile` (one trace per input shape), else as it is."""
    return tf.function(step_fn, jit_compile=True, reduce_retracing=True) if jit_compile else step_fn


def _results(loss: tf_keras.metrics.Metric, metrics: List[Any]) -> Dict[str, tf.Tensor]:
    output = {"loss": loss.result()}
    for metric in metrics:
        output[metric.name] = metric.result()
    return output


class KerasTrainer(orbit.StandardTrainer):
    """Trains a task's model with its loss and optimizer; reports loss and metrics per loop.

    The loss is averaged over the global batch (`tf.nn.compute_average_loss`)
    plus the model's regularisation losses, so gradients are right under any
    strategy. Under mixed_float16 the loss is scaled by a `LossScaleOptimizer`
    around the task's optimizer; checkpoint `checkpoint_items` with the task's
    own items to keep its loss scale.
    """

    def __init__(self, task: Task, strategy: tf.distribute.Strategy, *, precision: str = precision_lib.FLOAT32,
                 jit_compile: bool = False) -> None:
        """Initializes the trainer.

        Args:
            task: The task; built inside `strategy.scope()` (and `precision_lib.policy_scope(precision)`).
            strategy: The distribution strategy.
            precision: The Keras dtype policy the task's model was built under (`checks.PRECISIONS`).
            jit_compile: Compile the per-replica train step with XLA.
        """
        self.task = task
        self.strategy = strategy
        self.precision = precision
        with strategy.scope():
            self.train_loss = tf_keras.metrics.Mean("loss")
            self.train_metrics = task.metrics()
            self.optimizer = precision_lib.training_optimizer(task.optimizer, precision)
            self._maybe_build_optimizer()
        self._step_fn = _maybe_jit(self._replica_step, jit_compile)
        super().__init__(orbit.utils.make_distributed_dataset(strategy, task.train_dataset))

    def _maybe_build_optimizer(self) -> None:
        """Creates the optimizer's slot variables now, where the model's variables exist already.

        Left to the first `apply_gradients`, they are created inside the first train loop's `tf.function`, which
        TensorFlow then traces twice (once creating variables, once more without): ~0.35 s of CPU for digits at
        the start of every train process, more for a larger model. Optimizers without `build(var_list)`
        (`tf_keras.optimizers.legacy`) and models built on their first call are left as they are.
        """
        model = self.task.model
        if isinstance(self.optimizer, tf_keras.optimizers.Optimizer) and model.built and model.trainable_variables:
            self.optimizer.build(model.trainable_variables)

    @property
    def checkpoint_items(self) -> Dict[str, Any]:
        """Trackables to checkpoint beside the task's (`model`, `optimizer`): the loss scale, under mixed_float16.

        The `LossScaleOptimizer` goes in as `loss_scale_optimizer`; its inner optimizer stays `optimizer`, where a
        float32 run has it, so evaluate and export restore either without creating loss-scale state.
        """
        return {"loss_scale_optimizer": self.optimizer} if precision_lib.is_loss_scaled(self.optimizer) else {}

    @property
    def global_step(self) -> tf.Variable:
        return self.task.global_step

    def train_loop_begin(self) -> None:
        for metric in [self.train_loss] + self.train_metrics:
            metric.reset_state()

    def _replica_step(self, features: Any, labels: Any) -> None:
        model, task, optimizer = self.task.model, self.task, self.optimizer
        scaled = precision_lib.is_loss_scaled(optimizer)
        with tf.GradientTape() as tape:
            predictions = precision_lib.to_float32(model(features, training=True))
            per_example = task.loss(labels, predictions)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=task.global_batch_size)
            if model.losses:
                regularization = tf.add_n(precision_lib.to_float32(model.losses))
                loss += tf.nn.scale_regularization_loss(regularization)
            objective = optimizer.get_scaled_loss(loss) if scaled else loss
        grads = tape.gradient(objective, model.trainable_variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        self.train_loss.update_state(per_example)
        for metric in self.train_metrics:
            metric.update_state(labels, predictions)

    def train_step(self, iterator: Any) -> None:
        features, labels = next(iterator)
        self.strategy.run(self._step_fn, args=(features, labels))

    def train_loop_end(self) -> Dict[str, tf.Tensor]:
        return _results(self.train_loss, self.train_metrics)


class KerasEvaluator(orbit.StandardEvaluator):
    """Evaluates a task's model over its evaluation dataset: loss and metrics.

    For classifiers the output also holds `confusion_matrix` (rows: true class,
    columns: predicted class, in `task.class_names` order); for binary
    classifiers (two classes, logits) also `roc`: true and false positive rates
    of P(class 1) at thresholds 0, 0.02, ..., 1.
    """

    def __init__(self, task: Task, strategy: tf.distribute.Strategy, *, jit_compile: bool = False) -> None:
        """Initializes the evaluator.

        Args:
            task: The task; built inside `strategy.scope()` (and its precision's `policy_scope`).
            strategy: The distribution strategy.
            jit_compile: Compile the per-replica eval step with XLA.
        """
        self.task = task
        self.strategy = strategy
        self._step_fn = _maybe_jit(self._replica_step, jit_compile)
        n = len(task.class_names or ())
        with strategy.scope():
            self.eval_loss = tf_keras.metrics.Mean("loss")
            self.eval_metrics = task.metrics()
            self._confusion = tf.Variable(
                tf.zeros([n, n], tf.int64), trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.SUM,
            )
            # Binary classifiers: counts at fixed thresholds of P(class 1), for the ROC curve.
            self._roc_counts = [
                cls(thresholds=ROC_THRESHOLDS) for cls in (
                    tf_keras.metrics.TruePositives, tf_keras.metrics.FalsePositives,
                    tf_keras.metrics.TrueNegatives, tf_keras.metrics.FalseNegatives)
            ] if n == 2 else []
        super().__init__(orbit.utils.make_distributed_dataset(strategy, task.eval_dataset))

    def eval_begin(self) -> None:
        for metric in [self.eval_loss] + self.eval_metrics + self._roc_counts:
            metric.reset_state()
        for v in self._confusion_components():
            v.assign(tf.zeros_like(v))

    def _replica_step(self, features: Any, labels: Any) -> None:
        model, task = self.task.model, self.task
        n = len(task.class_names or ())
        predictions = precision_lib.to_float32(model(features, training=False))
        self.eval_loss.update_state(task.loss(labels, predictions))
        for metric in self.eval_metrics:
            metric.update_state(labels, predictions)
        if n:
            predicted = tf.argmax(predictions, axis=-1)
            self._confusion.assign_add(
                tf.math.confusion_matrix(tf.reshape(labels, [-1]), predicted, num_classes=n, dtype=tf.int64)
            )
        if self._roc_counts:
            positive = tf.nn.softmax(predictions, axis=-1)[:, 1]
            for count in self._roc_counts:
                count.update_state(tf.reshape(labels, [-1]), positive)

    def eval_step(self, iterator: Any) -> None:
        features, labels = next(iterator)
        self.strategy.run(self._step_fn, args=(features, labels))

    def eval_end(self) -> Dict[str, tf.Tensor]:
        output = _results(self.eval_loss, self.eval_metrics)
        if self.task.class_names:
            output[CONFUSION_MATRIX] = self._confusion.read_value()
        if self._roc_counts:
            tp, fp, tn, fn = (tf.cast(c.result(), tf.float64) for c in self._roc_counts)
            output[ROC] = {
                "thresholds": tf.constant(ROC_THRESHOLDS, tf.float64),
                "tpr": tf.math.divide_no_nan(tp, tp + fn),
                "fpr": tf.math.divide_no_nan(fp, fp + tn),
            }
        return output

    @property
    def output_names(self) -> List[str]:
        """The scalar names `evaluate` reports (metrics a best-checkpoint tracker can use)."""
        return ["loss"] + [metric.name for metric in self.eval_metrics]

    def _confusion_components(self) -> List[tf.Variable]:
        values = getattr(self._confusion, "values", None)
        return list(values) if values is not None else [self._confusion]
