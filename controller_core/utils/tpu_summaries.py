"""A function traced twice: once writing summaries, once with summaries statically off."""

import copy
import functools
from typing import Any, Callable

import tensorflow as tf


class OptionalSummariesFunction:
    """Holds a `tf.function` with summaries and one with summaries disabled.

    Calling the object dispatches on `tf.summary.should_record_summaries()`, so
    loops that write no summaries run a trace with no summary ops at all (on TPU
    those ops force a round trip to the host). Works as a method decorator too.
    """

    def __init__(self, function: Callable[..., Any], **tf_function_kwargs: Any) -> None:
        """Initializes the pair of functions.

        Args:
            function: The Python function to trace.
            **tf_function_kwargs: Passed on to both `tf.function` calls.
        """

        @functools.wraps(function)
        def without_summaries(*args: Any, **kwargs: Any) -> Any:
            with tf.summary.record_if(False):
                return function(*args, **kwargs)

        self.with_summaries = tf.function(function, **tf_function_kwargs)
        self.without_summaries = tf.function(without_summaries, **tf_function_kwargs)

    def __get__(self, instance: Any, owner: Any) -> "OptionalSummariesFunction":
        if instance is None:
            return self
        bound = copy.copy(self)
        bound.with_summaries = self.with_summaries.__get__(instance, owner)
        bound.without_summaries = self.without_summaries.__get__(instance, owner)
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if tf.summary.should_record_summaries():
            return self.with_summaries(*args, **kwargs)
        return self.without_summaries(*args, **kwargs)
