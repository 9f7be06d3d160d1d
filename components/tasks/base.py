"""What a task is: the model, its data, loss and metrics, or an Orbit-style trainer and evaluator of its own."""

import dataclasses
from typing import Any, Callable, List, Mapping, Optional, Sequence

import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe import checks

DatasetFn = Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]


@dataclasses.dataclass
class Task:
    """A model with its data, loss and metrics, as returned by a task factory.

    Task factories are called inside the distribution strategy's scope, so the
    model and optimizer variables they create are distributed. A task either
    gives the parts the generic Keras runners need (`optimizer`,
    `train_dataset`, `eval_dataset`, `loss`, `metrics`), or brings an
    Orbit-style `trainer` and/or `evaluator` of its own; the parts a given
    runner does not use may be left out.

    Attributes:
        name: The task's name (the registered name or `module:factory`).
        model: A `tf_keras.Model` (built, or built by its first call): checkpointed and exported.
        optimizer: A `tf_keras` optimizer; its `iterations` is the global step unless `global_step` is given.
            Required for the generic trainer.
        train_dataset: `fn(input_context) -> tf.data.Dataset` of `(features, labels)` batches, repeated; batched
            per replica from the context. Required for the generic trainer.
        eval_dataset: Like `train_dataset`, finite (one pass is one evaluation). Required for the generic
            evaluator, and for checking an export's predictions.
        loss: `fn(labels, predictions)` returning per-example losses. Required for the generic runners.
        metrics: Returns fresh `tf_keras.metrics.Metric` objects (called once for training and once for
            evaluation); none by default.
        serving_signature: A `tf.function` with an input signature, wrapping the model for serving; exported as
            `serving_default`.
        class_names: For classifiers: the names of the classes, in label order (a confusion matrix, and KFP's
            ClassificationMetrics, are produced only for tasks that have them).
        global_batch_size: The global batch size, for loss scaling.
        trainer: An Orbit-style trainer (`orbit.AbstractTrainer`) to run instead of the generic one; it must
            advance `global_step`.
        evaluator: An Orbit-style evaluator to run instead of the generic one.
        checkpoint_items: More trackables to checkpoint with the model (e.g. the trainer's own state).
        global_step: The step counter, when it is not `optimizer.iterations` (e.g. a trainer's own).
        best_metric: The task's primary metric: what picks the best checkpoint unless a step says otherwise.
        best_mode: `higher` or `lower`: which values of `best_metric` are better.
        metric_names: The scalar metrics `evaluator` reports, so that metric names can be checked before any
            evaluation; the generic evaluator's are known without it (`loss` and each metric's name).
        config: The effective config, defaults filled in (e.g. `dataclasses.asdict` of the parsed config): stored
            in the run directory's `run_config.json` and compared by every later step. None: the given config.
        eval_only_config_keys: Config keys that may differ between training and evaluation without changing
            what the checkpoints mean (e.g. an evaluation batch size).
        loss_name: The training loss in the trainer's output (nested keys as `a/b`): what the divergence check
            reads.
        init_fn: Called by training when the run has no checkpoint yet (the `CheckpointManager`'s `init_fn`),
            e.g. to warm-start from a pretrained checkpoint.
        checkpoint_train_iterator: Whether training checkpoints its data iterator (an exact resume), where the
            iterator can be saved; False when the input pipeline cannot be saved (stateful ops) or should not
            be (large shuffle buffers): a resumed run then restarts its data.
        serving_inputs: Returns a sample batch of `serving_signature`'s inputs (a tensor, or a dict by input
            name), to check an export against the checkpointed model; default: an evaluation batch's features.
        no_serving_reason: Why a task without a `serving_signature` has none (the export's one-line refusal).
        write_run_files: Called with the run directory when training starts (chief only), after the run config
            is recorded: files of the task's own in the run directory (e.g. Model Garden's `params.yaml`).
    """

    name: str
    model: Any
    optimizer: Any = None
    train_dataset: Optional[DatasetFn] = None
    eval_dataset: Optional[DatasetFn] = None
    loss: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None
    metrics: Callable[[], List[Any]] = list
    serving_signature: Optional[Callable[..., Any]] = None
    class_names: Optional[Sequence[str]] = None
    global_batch_size: Optional[int] = None
    trainer: Optional[orbit.AbstractTrainer] = None
    evaluator: Optional[orbit.AbstractEvaluator] = None
    checkpoint_items: dict = dataclasses.field(default_factory=dict)
    global_step: Optional[tf.Variable] = None
    best_metric: str = "loss"
    best_mode: str = "lower"
    metric_names: Optional[Sequence[str]] = None
    config: Optional[Mapping[str, Any]] = None
    eval_only_config_keys: Sequence[str] = ()
    loss_name: str = "loss"
    init_fn: Optional[Callable[[], None]] = None
    checkpoint_train_iterator: bool = True
    serving_inputs: Optional[Callable[[], Any]] = None
    no_serving_reason: str = ""
    write_run_files: Optional[Callable[[str], None]] = None

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if self.global_step is None:
            if self.optimizer is None:
                raise checks.InputError(f"{where} gives neither `optimizer` nor `global_step`: one is the step counter.")
            self.global_step = self.optimizer.iterations
        missing = []
        if self.trainer is None:
            missing += [f for f in ("optimizer", "train_dataset", "loss") if getattr(self, f) is None]
        if self.evaluator is None:
            missing += [f for f in ("eval_dataset", "loss") if getattr(self, f) is None and f not in missing]
        if missing:
            raise checks.InputError(
                f"{where} lacks {missing}: the generic Keras trainer and evaluator need them (or give the task an "
                "Orbit-style `trainer` and `evaluator`)."
            )
        checks.check_metric_name(f"{where}: best_metric", self.best_metric)
        checks.check_metric_name(f"{where}: loss_name", self.loss_name)
        checks.check_choice(f"{where}: best_mode", self.best_mode, checks.BEST_MODES)

    @property
    def is_classifier(self) -> bool:
        """Whether the task has class names: a confusion matrix and ClassificationMetrics are produced for it."""
        return bool(self.class_names)

    def eval_metric_names(self) -> Optional[List[str]]:
        """The scalar metrics an evaluation reports, or None when only an evaluation can tell (own evaluator)."""
        if self.metric_names is not None:
            return list(self.metric_names)
        if self.evaluator is not None:
            return None
        return ["loss"] + [metric.name for metric in self.metrics()]
