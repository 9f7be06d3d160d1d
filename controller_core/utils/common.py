"""Small helpers shared by runners and the controller."""

import inspect
from typing import Any, Callable, Optional, Union

import tensorflow as tf


def create_global_step() -> tf.Variable:
    """Creates the int64 global-step variable the controller counts with.

    The variable is non-trainable and aggregated with `ONLY_FIRST_REPLICA`, so
    replicas incrementing it inside `strategy.run` advance it once per step.
    Create it inside the distribution strategy's scope.

    Returns:
        A scalar `tf.Variable` holding 0.
    """
    return tf.Variable(
        0,
        dtype=tf.int64,
        name="global_step",
        trainable=False,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def make_distributed_dataset(
    strategy: Optional[tf.distribute.Strategy],
    dataset_or_fn: Union[tf.data.Dataset, Callable[..., tf.data.Dataset]],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Distributes a dataset, or a dataset function, over a strategy's replicas.

    Args:
        strategy: The strategy to distribute over; `None` means the current one
            (`tf.distribute.get_strategy()`).
        dataset_or_fn: A `tf.data.Dataset`, or a function returning one. A function
            that declares an `input_context` parameter receives the
            `tf.distribute.InputContext` of each input pipeline.
        *args: Positional arguments for `dataset_or_fn` when it is a function.
        **kwargs: Keyword arguments for `dataset_or_fn` when it is a function.

    Returns:
        A distributed dataset.

    Raises:
        ValueError: If `dataset_or_fn` is neither a dataset nor callable.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(dataset_or_fn, tf.data.Dataset):
        return strategy.experimental_distribute_dataset(dataset_or_fn)
    if not callable(dataset_or_fn):
        raise ValueError(
            "`dataset_or_fn` must be a tf.data.Dataset or a callable returning one, "
            f"got {type(dataset_or_fn).__name__}: {dataset_or_fn!r}."
        )
    wants_context = "input_context" in inspect.signature(dataset_or_fn).parameters

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        if wants_context:
            return dataset_or_fn(*args, input_context=input_context, **kwargs)
        return dataset_or_fn(*args, **kwargs)

    return strategy.distribute_datasets_from_function(dataset_fn)


def get_value(x: Any) -> Any:
    """Returns the NumPy value of a tensor (or variable); other values pass through."""
    if tf.is_tensor(x) or isinstance(x, tf.Variable):
        return x.numpy()
    return x
