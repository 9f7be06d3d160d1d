"""Mixed precision for the generic Keras runners: the policy a task is built under, loss scaling, float32 edges.

The `precision` input of train, evaluate, continuous_eval and export names a Keras
dtype policy (`tfpipe.checks.PRECISIONS`):

* `float32` (the default): tfpipe sets no policy at all; whatever the task does
  (a task with its own trainer may set one itself) is left alone.
* `mixed_float16`: float16 compute, float32 variables (GPUs). The generic
  trainer scales the loss with tf_keras's `LossScaleOptimizer`, which wraps the
  task's optimizer; its dynamic loss scale is checkpointed beside it, so a
  resumed run continues exactly.
* `mixed_bfloat16`: bfloat16 compute, float32 variables (TPUs; also runs on
  CPUs). No loss scaling is needed.

The policy is in force only while the task factory builds the model (layers take
their dtype policy when they are created), so nothing leaks into the process.
Variables are float32 under every policy: a checkpoint of a run in any precision
restores into a model built in any other, and evaluating or exporting needs no
loss-scale state (the trainer checkpoints the task's optimizer under `optimizer`,
as a float32 run does, and the loss scale apart under `loss_scale_optimizer`).

Precision and XLA (`jit_compile`) apply to the generic runners only. A task that
brings its own Orbit trainer (or evaluator) keeps control of its own precision
and compilation: the components refuse `precision` other than `float32` and
`jit_compile` for such a step (see `check_generic_runner`), rather than building
its model under a policy it did not ask for.
"""

import contextlib
from typing import Any, Callable, Iterator, Mapping

import tensorflow as tf
import tf_keras

from tfpipe import checks

FLOAT32 = "float32"
MIXED_FLOAT16 = "mixed_float16"
LOW_PRECISION = (tf.float16, tf.bfloat16)


@contextlib.contextmanager
def policy_scope(precision: str) -> Iterator[None]:
    """Makes `precision` the global Keras dtype policy inside the block (build the task there); float32: no-op."""
    if precision == FLOAT32:
        yield
        return
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def check_generic_runner(task: Any, *, precision: str, jit_compile: bool, runner: str) -> None:
    """Refuses `precision`/`jit_compile` for a task whose `runner` (`trainer` or `evaluator`) is its own.

    Raises:
        checks.InputError: Naming the input, the task, and what to do instead. Nothing was run.
    """
    if getattr(task, runner) is None:
        return
    asked = [f"`precision` ({precision!r})"] if precision != FLOAT32 else []
    asked += ["`jit_compile` (true)"] if jit_compile else []
    if asked:
        raise checks.InputError(
            f"{' and '.join(asked)} apply to tfpipe's generic Keras {runner}, but task {task.name!r} brings its own "
            f"{runner}, which keeps control of its precision and compilation: leave `precision` at 'float32' "
            "(tfpipe then sets no dtype policy) and `jit_compile` false, and set them in the task. Nothing was run."
        )


def training_optimizer(optimizer: Any, precision: str) -> Any:
    """The optimizer the generic trainer steps with: a `LossScaleOptimizer` around `optimizer` for mixed_float16."""
    if precision == MIXED_FLOAT16:
        return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def is_loss_scaled(optimizer: Any) -> bool:
    """Whether `optimizer` scales the loss (a tf_keras `LossScaleOptimizer`)."""
    return isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)


def to_float32(structure: Any) -> Any:
    """Casts every float16/bfloat16 tensor of a (nested) structure to float32; other values pass unchanged.

    The generic runners compute losses and metrics in float32 whatever the model's compute dtype (a softmax
    cross-entropy in float16 overflows), as Keras recommends for a model's outputs.
    """
    return tf.nest.map_structure(
        lambda t: tf.cast(t, tf.float32) if getattr(t, "dtype", None) in LOW_PRECISION else t, structure)


def float32_signature(signature: Callable[..., Any]) -> tf.types.experimental.GenericFunction:
    """A serving `tf.function` over `signature` that takes and returns float32 where it used float16/bfloat16.

    Args:
        signature: A `tf.function` with an input signature (the task's serving signature, traced under a
            mixed policy).

    Returns:
        A `tf.function` with the same input names: low-precision float inputs become float32 (cast inside), and
        low-precision float outputs are cast to float32.
    """
    specs = signature.input_signature
    float32_specs = [
        tf.TensorSpec(spec.shape, tf.float32, spec.name) if spec.dtype in LOW_PRECISION else spec for spec in specs]

    def serve(*args: tf.Tensor) -> Mapping[str, tf.Tensor]:
        cast = [tf.cast(arg, spec.dtype) for arg, spec in zip(args, specs)]
        return to_float32(signature(*cast))

    return tf.function(serve, input_signature=float32_specs)
