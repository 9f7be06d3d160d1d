"""Rolling back to the last good checkpoint when the training loss diverges."""

import math
from typing import Optional

from absl import logging
import tensorflow as tf

from tfpipe.controller_core import restore
from tfpipe.controller_core import runner
from tfpipe.controller_core.actions.new_best_metric import lookup_metric
from tfpipe.controller_core.utils import common


class DivergenceError(FloatingPointError):
    """Training diverged and could not be recovered."""


class RecoverFromDivergence:
    """A train action that restores the last checkpoint when the loop's loss is NaN, inf or too large.

    Run it first among the train actions: the controller saves checkpoints after
    the actions, so a diverged state is never checkpointed. The restore brings back
    the weights, the optimizer and, when the checkpoint holds the training
    iterator, the data position too. After `max_recoveries` rollbacks in this
    process (or with no checkpoint to roll back to) it raises `DivergenceError`
    naming the step and the loss.
    """

    def __init__(
        self,
        checkpoint_manager: tf.train.CheckpointManager,
        global_step: tf.Variable,
        *,
        loss_key: str = "loss",
        loss_upper_bound: Optional[float] = None,
        max_recoveries: int = 3,
    ) -> None:
        """Initializes the action.

        Args:
            checkpoint_manager: The manager whose latest checkpoint is "last good".
            global_step: The global step (for messages).
            loss_key: The loss in the train output (nested keys as `a/b`).
            loss_upper_bound: A finite loss above this also counts as divergence.
            max_recoveries: Rollbacks allowed before failing; 0 fails at once.

        Raises:
            ValueError: For a negative `max_recoveries` or a non-positive bound.
        """
        if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int) or max_recoveries < 0:
            raise ValueError(f"`max_recoveries` must be a non-negative integer, got {max_recoveries!r}.")
        if loss_upper_bound is not None and not loss_upper_bound > 0:
            raise ValueError(f"`loss_upper_bound` must be a positive number or None, got {loss_upper_bound!r}.")
        self._manager = checkpoint_manager
        self._global_step = global_step
        self._loss_key = loss_key
        self._bound = loss_upper_bound
        self._max = max_recoveries
        self.recoveries = 0

    def diverged(self, loss: float) -> bool:
        """Whether `loss` counts as divergence."""
        return not math.isfinite(loss) or (self._bound is not None and loss > self._bound)

    def __call__(self, output: runner.Output) -> None:
        loss = float(common.get_value(lookup_metric(output, self._loss_key)))
        if not self.diverged(loss):
            return
        step = int(self._global_step.numpy())
        latest = tf.train.latest_checkpoint(self._manager.directory)
        if latest is None or self.recoveries >= self._max:
            reason = "no checkpoint to roll back to" if latest is None else f"after {self.recoveries} rollback(s)"
            raise DivergenceError(f"Training diverged at step {step}: {self._loss_key} = {loss} ({reason}).")
        self.recoveries += 1
        self._manager.sync()
        restore.restore_checked(self._manager.checkpoint, latest)
        logging.warning("Divergence at step %d (%s = %s): rolled back to %s.", step, self._loss_key, loss, latest)
        print(f"train | step: {step: 6d} | {self._loss_key}: {loss} diverged | rolled back to {latest} "
              f"(recovery {self.recoveries} of {self._max})", flush=True)
