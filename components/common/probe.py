"""One batch through a task before any work: shape and dtype mistakes fail in seconds, in one line.

A task whose model was built for 3 features and whose data has 2 fails inside the
first train step, after the task, the strategy and the checkpoint machinery are up
(and, in a pipeline, after the train step's retries). `probe` finds that at the
start instead: it takes ONE batch of each dataset the step uses and pushes it
through the model (`training=False`), the loss, a fresh set of the task's metrics
and the serving signature. No optimizer step runs and no checkpoint is read or
written: the probe builds what a first call builds and updates no variable of the
model or the optimizer (its metrics are fresh objects, thrown away).

A mismatch is a `checks.InputError` naming the task, the part that refused the
batch and the tensors (dtype and shape of every feature and label), so entry
points and KFP steps report it as one line and exit 2.
"""

import re
from typing import Any, Optional, Sequence

import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import precision as precision_lib
from tfpipe.components.tasks import Task

SPLITS = ("train", "eval")
_MAX_ERROR = 300


def describe(tree: Any) -> str:
    """The dtypes and shapes of a (nested) batch, e.g. `{image: float32[32,2]}` or `int64[32]`."""
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in sorted(tree.items())) + "}"
    if isinstance(tree, (list, tuple)):
        return "(" + ", ".join(describe(v) for v in tree) + ")"
    if isinstance(tree, (tf.Tensor, tf.Variable, tf.TensorSpec)) or hasattr(tree, "dtype"):
        shape = ",".join("?" if d is None else str(d) for d in tf.TensorShape(tree.shape).as_list()) \
            if tf.TensorShape(tree.shape).rank is not None else "..."
        return f"{tf.as_dtype(tree.dtype).name}[{shape}]"
    return type(tree).__name__


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type and its message, whitespace folded.

    TensorFlow's graph errors carry the Python stack of the failing node ("Graph execution error: Detected at node
    ... defined at (most recent call last): <indented frames>"): only the message lines are kept.
    """
    text = getattr(error, "message", None) or str(error)
    text = text.split("\n\nCall arguments received")[0]
    if isinstance(error, tf.errors.OpError):
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith((" ", "\t"))
                and not line.startswith(("Graph execution error", "Detected at node"))]
        text = "\n".join(kept) or text
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _one_batch(task: Task, split: str) -> Optional[Any]:
    make = task.train_dataset if split == "train" else task.eval_dataset
    if make is None:
        return None
    for batch in make(None).take(1):
        return batch
    return None


def _refuse(task: Task, split: str, batch: Any, part: str, error: BaseException) -> checks.InputError:
    return checks.InputError(
        f"task {task.name!r}: one {split} batch {describe(batch)} does not fit the {part}: {one_line(error)}"
    )


def _serving_inputs(signature: Any, features: Any) -> Optional[list]:
    """Arguments for the serving signature: the batch's features where they fit its input signature, else zeros of
    the signature's dtypes and shapes (an unknown leading dimension: the batch size). None where no valid input
    can be made up: strings, or an unknown dimension past the batch's (an image of any size, say: a made-up one
    could be refused for its size, not for a mistake)."""
    specs = list(getattr(signature, "input_signature", None) or [])
    if not specs:
        return None
    flat = tf.nest.flatten(features)
    if len(flat) == len(specs) and all(s.is_compatible_with(f) for s, f in zip(specs, flat)):
        return flat
    batch = int(tf.shape(flat[0])[0]) if flat and tf.TensorShape(flat[0].shape).rank else 1
    inputs = []
    for spec in specs:
        if not isinstance(spec, tf.TensorSpec) or spec.dtype == tf.string or spec.shape.rank is None:
            return None
        dims = spec.shape.as_list()
        if None in dims[1:]:
            return None
        inputs.append(tf.zeros([batch if d is None else d for d in dims], spec.dtype))
    return inputs


def probe(task: Task, *, splits: Sequence[str] = SPLITS, serving: bool = True) -> None:
    """Pushes one batch of each split through the model, the loss, fresh metrics and the serving signature.

    Parts a task does not give (a dataset or loss left out because it brings its own runners, a serving signature
    without an input signature, one that takes strings, one with an unknown dimension past the batch's when no
    batch fits it) are skipped. Call it in the scope the task was built in,
    under the default strategy (no replica context is needed).

    Args:
        task: The built task.
        splits: `train` and/or `eval`: the datasets the step reads.
        serving: Also call the serving signature (on the last batch's features, or zeros of its input signature).

    Raises:
        checks.InputError: Naming the task, the part and the batch's tensors, when a part refuses the batch.
    """
    features = None
    for split in splits:
        batch = _one_batch(task, split)
        if batch is None:
            continue
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise checks.InputError(
                f"task {task.name!r}: the {split} dataset yields {describe(batch)}, not (features, labels) batches."
            )
        features, labels = batch[0], batch[1]
        try:
            predictions = precision_lib.to_float32(task.model(features, training=False))
        except Exception as e:  # noqa: BLE001 - any refusal of the batch is the task's input mistake.
            raise _refuse(task, split, batch, "model", e) from e
        if task.loss is not None:
            try:
                task.loss(labels, predictions)
            except Exception as e:  # noqa: BLE001
                raise _refuse(task, split, batch, f"loss (predictions {describe(predictions)})", e) from e
        for metric in task.metrics():
            try:
                metric.update_state(labels, predictions)
            except Exception as e:  # noqa: BLE001
                raise _refuse(task, split, batch, f"metric {metric.name!r} (predictions {describe(predictions)})",
                              e) from e
    signature = task.serving_signature if serving else None
    if signature is None:
        return
    inputs = _serving_inputs(signature, features) if features is not None else _serving_inputs(signature, [])
    if inputs is None:
        return
    try:
        signature(*inputs)
    except Exception as e:  # noqa: BLE001
        raise checks.InputError(
            f"task {task.name!r}: the serving signature refuses inputs {describe(inputs)}: {one_line(e)}"
        ) from e


def maybe_probe(task: Task, distribution: tf.distribute.Strategy, **options: Any) -> bool:
    """`probe(task, **options)` under the default strategy (one device); returns whether it ran.

    Under MirroredStrategy, TPUStrategy or several workers the batch would have to go through the strategy's replica
    context; there check-inputs (which builds the task on one device) has probed it already.
    """
    if tf.distribute.has_strategy() or distribution is not tf.distribute.get_strategy():
        return False
    probe(task, **options)
    return True
