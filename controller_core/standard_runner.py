"""Convenience runners: implement one step, get an efficient loop.

`StandardTrainer` runs::

    train_loop_begin()
    for _ in range(num_steps):
        train_step(iterator)
    return train_loop_end()

`StandardEvaluator` runs::

    state = eval_begin()
    for _ in range(num_steps):          # -1: until the dataset is exhausted
        step_outputs = eval_step(iterator)
        state = eval_reduce(state, step_outputs)
    return eval_end(state)              # eval_end() when the state is None

As in Orbit, `eval_reduce` runs after every step even when `eval_begin`
returned None (Model Garden's trainers aggregate logs there, starting from
None), except in a `tf.while_loop` without a state.

How the loop is compiled (a `tf.function` around a `tf.while_loop`, or a Python
loop around a `tf.function` step) is set by the frozen options dataclasses.
"""

import abc
import dataclasses
from typing import Any, Callable, Optional

import tensorflow as tf

from tfpipe.controller_core import runner
from tfpipe.controller_core.utils import loop_fns


@dataclasses.dataclass(frozen=True)
class StandardTrainerOptions:
    """How `StandardTrainer` builds its loop.

    Attributes:
        use_tf_function: Wrap the loop (or the step) in `tf.function`.
        use_tf_while_loop: Run the loop as a `tf.while_loop` inside one
            `tf.function`; requires `use_tf_function`.
        use_tpu_summary_optimization: Trace the loop twice, with and without
            in-step summaries, and record them on one step per loop only;
            requires `use_tf_while_loop`.
    """

    use_tf_function: bool = True
    use_tf_while_loop: bool = True
    use_tpu_summary_optimization: bool = False

    def __post_init__(self) -> None:
        if self.use_tf_while_loop and not self.use_tf_function:
            raise ValueError(
                f"`use_tf_while_loop=True` requires `use_tf_function=True`, got use_tf_function={self.use_tf_function}."
            )
        if self.use_tpu_summary_optimization and not self.use_tf_while_loop:
            raise ValueError(
                "`use_tpu_summary_optimization=True` requires `use_tf_while_loop=True`, "
                f"got use_tf_while_loop={self.use_tf_while_loop}."
            )


@dataclasses.dataclass(frozen=True)
class StandardEvaluatorOptions:
    """How `StandardEvaluator` builds its loop.

    Attributes:
        use_tf_function: Wrap the loop (or the step) in `tf.function`.
        use_tf_while_loop: Run the loop as a `tf.while_loop` inside one
            `tf.function`; requires `use_tf_function` and a positive step count.
        recreate_iterator_for_each_eval: Start every evaluation at the start of
            the dataset; False continues where the previous evaluation stopped.
    """

    use_tf_function: bool = True
    use_tf_while_loop: bool = False
    recreate_iterator_for_each_eval: bool = True

    def __post_init__(self) -> None:
        if self.use_tf_while_loop and not self.use_tf_function:
            raise ValueError(
                f"`use_tf_while_loop=True` requires `use_tf_function=True`, got use_tf_function={self.use_tf_function}."
            )


def _create_train_loop_fn(train_step_fn: Callable[[Any], Any], options: StandardTrainerOptions) -> Callable[..., Any]:
    if options.use_tf_while_loop:
        loop_fn = loop_fns.create_tf_while_loop_fn(train_step_fn)
        if options.use_tpu_summary_optimization:
            return loop_fns.LoopFnWithSummaries(loop_fn)
        return tf.function(loop_fn)
    if options.use_tf_function:
        train_step_fn = tf.function(train_step_fn)
    return loop_fns.create_loop_fn(train_step_fn)


def _create_eval_loop_fn(
    eval_step_fn: Callable[[Any], Any], has_state: bool, options: StandardEvaluatorOptions
) -> Callable[..., Any]:
    if options.use_tf_while_loop:
        if has_state:
            return tf.function(loop_fns.create_tf_while_loop_fn_with_state(eval_step_fn))
        return tf.function(loop_fns.create_tf_while_loop_fn(eval_step_fn))
    if options.use_tf_function:
        eval_step_fn = tf.function(eval_step_fn)
    return loop_fns.create_loop_fn(eval_step_fn)


class StandardTrainer(runner.AbstractTrainer, metaclass=abc.ABCMeta):
    """A trainer built from `train_step` plus optional begin/end hooks.

    The iterator over `train_dataset` persists across `train` calls, so
    consecutive loops continue through the data.
    """

    def __init__(self, train_dataset: Any, options: Optional[StandardTrainerOptions] = None) -> None:
        """Initializes the trainer.

        Args:
            train_dataset: A `tf.data.Dataset`, a distributed dataset, or a nested
                structure of them; `train_step` receives its iterator.
            options: How to build the loop; default `StandardTrainerOptions()`.
        """
        self._train_options = options or StandardTrainerOptions()
        self._train_dataset = train_dataset
        self._train_iter = None
        self._train_loop_fn = None

    def create_train_loop_fn(self) -> Callable[..., Any]:
        """Builds the loop function; override to customise the loop."""
        return _create_train_loop_fn(self.train_step, self._train_options)

    def train(self, num_steps: tf.Tensor) -> Optional[runner.Output]:
        """Runs `train_loop_begin`, `num_steps` x `train_step`, then `train_loop_end`."""
        self.train_loop_begin()
        if self._train_loop_fn is None:
            self._train_loop_fn = self.create_train_loop_fn()
        self._train_loop_fn(self.train_iterator, num_steps)
        return self.train_loop_end()

    @property
    def train_iterator(self) -> Any:
        """The persistent iterator over `train_dataset` (created on first use).

        Track it in the checkpoint (`tf.train.Checkpoint(..., train_iterator=...)`)
        to save the data position with the weights, for an exact resume.
        """
        if self._train_iter is None:
            self._train_iter = tf.nest.map_structure(iter, self.train_dataset)
        return self._train_iter

    def train_loop_begin(self) -> None:
        """Called eagerly before each loop (e.g. to reset metrics)."""

    @abc.abstractmethod
    def train_step(self, iterator: Any) -> None:
        """Runs one step. Called in cross-replica context: use `strategy.run` inside.

        Args:
            iterator: The iterator over `train_dataset`.
        """

    def train_loop_end(self) -> Optional[runner.Output]:
        """Called eagerly after each loop; returns the loop's output."""
        return None

    @property
    def train_dataset(self) -> Any:
        """The training dataset; setting it restarts iteration."""
        return self._train_dataset

    @train_dataset.setter
    def train_dataset(self, train_dataset: Any) -> None:
        self._train_dataset = train_dataset
        self._train_iter = None


class StandardEvaluator(runner.AbstractEvaluator, metaclass=abc.ABCMeta):
    """An evaluator built from `eval_step` plus optional begin/reduce/end hooks."""

    def __init__(self, eval_dataset: Any, options: Optional[StandardEvaluatorOptions] = None) -> None:
        """Initializes the evaluator.

        Args:
            eval_dataset: A `tf.data.Dataset`, a distributed dataset, or a nested
                structure of them; `eval_step` receives its iterator.
            options: How to build the loop; default `StandardEvaluatorOptions()`.
        """
        self._eval_options = options or StandardEvaluatorOptions()
        self._eval_dataset = eval_dataset
        self._eval_iter = None
        self._eval_loop_fn = None

    def create_eval_loop_fn(self, has_state: bool) -> Callable[..., Any]:
        """Builds the loop function; override to customise the loop.

        Args:
            has_state: Whether `eval_begin` returned a state (matters only for
                a `tf.while_loop`, whose loop variables it becomes).
        """
        return _create_eval_loop_fn(self.eval_step, has_state, self._eval_options)

    def evaluate(self, num_steps: tf.Tensor) -> Optional[runner.Output]:
        """Runs `eval_begin`, `num_steps` x `eval_step` (+ `eval_reduce`), then `eval_end`.

        Raises:
            ValueError: If `num_steps` is -1 and the loop is a `tf.while_loop`.
        """
        if self._eval_options.use_tf_while_loop and int(num_steps) == -1:
            raise ValueError(
                f"`num_steps` ({int(num_steps)}): evaluating until the dataset is exhausted is not supported "
                "with `use_tf_while_loop=True`; pass a positive number of steps."
            )
        state = self.eval_begin()
        has_state = state is not None
        if self._eval_loop_fn is None:
            self._eval_loop_fn = self.create_eval_loop_fn(has_state=has_state)
        if self._eval_iter is not None:
            iterator = self._eval_iter
        else:
            iterator = tf.nest.map_structure(iter, self.eval_dataset)
            if not self._eval_options.recreate_iterator_for_each_eval:
                self._eval_iter = iterator
        if self._eval_options.use_tf_while_loop and not has_state:
            self._eval_loop_fn(iterator, num_steps)
        else:
            state = self._eval_loop_fn(iterator, num_steps, state=state, reduce_fn=self.eval_reduce)
        return self.eval_end() if state is None else self.eval_end(state)

    def eval_begin(self) -> Any:
        """Called eagerly before each evaluation; may return an initial state."""
        return None

    @abc.abstractmethod
    def eval_step(self, iterator: Any) -> Any:
        """Runs one step. Called in cross-replica context: use `strategy.run` inside.

        Args:
            iterator: The iterator over `eval_dataset`.

        Returns:
            Step outputs for `eval_reduce`.
        """

    def eval_end(self, *args: Any) -> Optional[runner.Output]:
        """Called eagerly after each evaluation, with the reduced state unless it is None."""
        return None

    def eval_reduce(self, state: Any = None, step_outputs: Any = None) -> Any:
        """Folds one step's outputs into the state (eagerly, unless in a `tf.while_loop`).

        Called after every step with the previous state (first: what
        `eval_begin` returned, possibly None); what it returns after the last
        step goes to `eval_end`. The default keeps nothing (returns None).
        """
        return None

    @property
    def eval_dataset(self) -> Any:
        """The evaluation dataset; setting it restarts iteration."""
        return self._eval_dataset

    @eval_dataset.setter
    def eval_dataset(self, eval_dataset: Any) -> None:
        self._eval_dataset = eval_dataset
        self._eval_iter = None
