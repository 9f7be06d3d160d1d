"""The minimal protocols the `Controller` drives: a trainer and an evaluator.

The controller owns the *outer* loop (scheduling, checkpoints, summaries, actions);
a runner owns the *inner* loop. Each runner receives a number of steps as a scalar
`tf.Tensor` and returns an optional, possibly nested, dictionary of outputs. Nested
dictionaries are written to TensorBoard sub-directories named after their keys.
"""

import abc
from typing import Dict, Optional, Union

import numpy as np
import tensorflow as tf

Output = Dict[str, Union[tf.Tensor, float, np.number, np.ndarray, "Output"]]  # pytype: disable=not-supported-yet


class AbstractTrainer(tf.Module, metaclass=abc.ABCMeta):
    """An inner training loop: runs a number of steps and reports outputs."""

    @abc.abstractmethod
    def train(self, num_steps: tf.Tensor) -> Optional[Output]:
        """Runs `num_steps` training steps.

        The controller expects the global step to advance by `num_steps` (what a
        "step" means is up to the implementation).

        Args:
            num_steps: A scalar int32 `tf.Tensor`, the number of steps to run.

        Returns:
            `None`, or a (possibly nested) dictionary of outputs to log and summarise.
        """


class AbstractEvaluator(tf.Module, metaclass=abc.ABCMeta):
    """An inner evaluation loop: runs a number of steps and reports metrics."""

    @abc.abstractmethod
    def evaluate(self, num_steps: tf.Tensor) -> Optional[Output]:
        """Runs `num_steps` evaluation steps.

        Args:
            num_steps: A scalar int32 `tf.Tensor`; `-1` means "until the evaluation
                dataset is exhausted", where the implementation supports it.

        Returns:
            `None`, or a (possibly nested) dictionary of evaluation results.
        """
