"""Epoch bookkeeping for runners whose outer loop is counted in steps."""

import tensorflow as tf


class EpochHelper:
    """Tells a trainer when an epoch of `epoch_steps` global steps begins and ends.

    Typical use inside a `StandardTrainer`::

        def train_loop_begin(self):
            if self.epoch_helper.epoch_begin():
                self.metric.reset_state()

        def train_loop_end(self):
            if self.epoch_helper.epoch_end():
                return {"loss": self.metric.result()}
    """

    def __init__(self, epoch_steps: int, global_step: tf.Variable) -> None:
        """Initializes the helper.

        Args:
            epoch_steps: Global steps in one epoch; a positive integer.
            global_step: The global-step variable the trainer advances.

        Raises:
            ValueError: If `epoch_steps` is not a positive integer.
        """
        if not isinstance(epoch_steps, int) or epoch_steps < 1:
            raise ValueError(f"`epoch_steps` ({epoch_steps!r}) must be a positive integer.")
        self._epoch_steps = epoch_steps
        self._global_step = global_step
        self._current_epoch = None
        self._epoch_start_step = None
        self._in_epoch = False

    def epoch_begin(self) -> bool:
        """Starts an epoch unless one is running; returns whether one started."""
        if self._in_epoch:
            return False
        step = int(self._global_step.numpy())
        self._epoch_start_step = step
        self._current_epoch = step // self._epoch_steps
        self._in_epoch = True
        return True

    def epoch_end(self) -> bool:
        """Ends the running epoch once the global step passed its end; returns whether it ended.

        Raises:
            ValueError: If no epoch is running (`epoch_begin` was not called).
        """
        if not self._in_epoch:
            raise ValueError("`epoch_end` can only be called inside an epoch; call `epoch_begin` first.")
        step = int(self._global_step.numpy())
        if step // self._epoch_steps > self._current_epoch:
            self._in_epoch = False
            return True
        return False

    @property
    def batch_index(self) -> int:
        """The index of the next batch within the running epoch."""
        return int(self._global_step.numpy()) - self._epoch_start_step

    @property
    def current_epoch(self) -> int:
        """The zero-based index of the running (or last) epoch."""
        return self._current_epoch
