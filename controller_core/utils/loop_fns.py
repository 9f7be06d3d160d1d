"""Inner-loop builders: a Python loop, a `tf.while_loop`, and a summaries-aware loop."""

import contextlib
from typing import Any, Callable, Optional

import tensorflow as tf

from tfpipe.controller_core.utils import tpu_summaries

StepFn = Callable[[Any], Any]
ReduceFn = Callable[[Any, Any], Any]

_EXHAUSTED = (StopIteration, tf.errors.OutOfRangeError)


def create_loop_fn(step_fn: StepFn) -> Callable[..., Any]:
    """Wraps `step_fn` in a Python loop over a fixed number of steps.

    The returned `loop_fn(iterator, num_steps, state=None, reduce_fn=None)` calls
    `step_fn(iterator)` `num_steps` times (`-1`: until the iterator is exhausted)
    and, given `reduce_fn`, folds each step's output into `state`. An iterator that
    runs out ends the loop early; the state gathered so far is returned.

    Args:
        step_fn: A function taking an iterator and running one step.

    Returns:
        The loop function.
    """

    def loop_fn(iterator: Any, num_steps: Any, state: Any = None, reduce_fn: Optional[ReduceFn] = None) -> Any:
        steps = int(num_steps)
        done = 0
        try:
            # `async_scope` lets a remote (TPU) eager executor surface end-of-data
            # errors at the scope's exit instead of after every step.
            with tf.experimental.async_scope() if steps == -1 else contextlib.nullcontext():
                while steps == -1 or done < steps:
                    outputs = step_fn(iterator)
                    if reduce_fn is not None:
                        state = reduce_fn(state, outputs)
                    done += 1
        except _EXHAUSTED:
            if steps == -1:
                tf.experimental.async_clear_error()
        return state

    return loop_fn


def create_tf_while_loop_fn(step_fn: StepFn) -> Callable[[Any, tf.Tensor], None]:
    """Wraps `step_fn` in a loop that AutoGraph turns into a `tf.while_loop`.

    Wrap the result in `tf.function`. `num_steps` must be a `tf.Tensor` so one
    trace serves every loop length.

    Args:
        step_fn: A function taking an iterator and running one step.

    Returns:
        `loop_fn(iterator, num_steps)`.
    """

    def loop_fn(iterator: Any, num_steps: tf.Tensor) -> None:
        _check_tensor_steps(num_steps)
        for _ in tf.range(num_steps):
            step_fn(iterator)

    return loop_fn


def create_tf_while_loop_fn_with_state(step_fn: StepFn) -> Callable[..., Any]:
    """Like `create_tf_while_loop_fn`, folding each step's output into a state.

    The state's tensors may change shape from one iteration to the next (their
    shape invariants are relaxed to unknown dimensions of the same rank).

    Args:
        step_fn: A function taking an iterator and running one step.

    Returns:
        `loop_fn(iterator, num_steps, state, reduce_fn)` returning the final state.
    """

    def loop_fn(iterator: Any, num_steps: tf.Tensor, state: Any, reduce_fn: ReduceFn) -> Any:
        _check_tensor_steps(num_steps)

        def body(i: tf.Tensor, state: Any) -> Any:
            return i + 1, reduce_fn(state, step_fn(iterator))

        invariants = tf.nest.map_structure(_relaxed_shape, state)
        _, state = tf.while_loop(
            lambda i, _: i < num_steps,
            body,
            (tf.constant(0, num_steps.dtype), state),
            shape_invariants=(tf.TensorShape([]), invariants),
        )
        return state

    return loop_fn


class LoopFnWithSummaries(tpu_summaries.OptionalSummariesFunction):
    """A loop function that records in-step summaries on the loop's first step only.

    When summaries are due at the start of a loop, one step runs through the
    summary-writing trace and the rest through the summary-free one, so the
    expensive (on TPU, host-bound) summary ops run once per loop at most.
    """

    def __call__(self, iterator: Any, num_steps: tf.Tensor) -> Any:  # pytype: disable=signature-mismatch
        output = None
        if tf.summary.should_record_summaries():
            output = self.with_summaries(iterator, tf.constant(1, num_steps.dtype))
            num_steps = num_steps - 1
        if num_steps >= 1:
            output = self.without_summaries(iterator, num_steps)
        return output


def _check_tensor_steps(num_steps: Any) -> None:
    if not isinstance(num_steps, tf.Tensor):
        raise ValueError(
            f"`num_steps` must be a `tf.Tensor`, got {type(num_steps).__name__} ({num_steps!r}): "
            "a Python number would retrace the `tf.function` for every new value."
        )


def _relaxed_shape(value: Any) -> tf.TensorShape:
    shape = tf.convert_to_tensor(value).shape
    return tf.TensorShape([None] * shape.rank) if shape.rank is not None else tf.TensorShape(None)
