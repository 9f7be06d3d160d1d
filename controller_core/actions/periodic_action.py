"""An action that fires once per interval of global steps."""

import tensorflow as tf

from tfpipe.controller_core import runner
from tfpipe.controller_core.actions.conditional_action import Action


class PeriodicAction:
    """Runs `action` whenever the global step crossed a multiple of `interval` since the last call.

    Unlike a `step % interval == 0` test, this fires even when loop boundaries
    never land on a multiple (e.g. interval 100 with 30 steps per loop fires at
    steps 120, 210, 300, ...). The first call compares with the step at
    construction.
    """

    def __init__(self, action: Action, interval: int, global_step: tf.Variable) -> None:
        """Initializes the action.

        Args:
            action: The action to run.
            interval: The interval in global steps; a positive integer.
            global_step: The global-step variable.

        Raises:
            ValueError: If `interval` is not a positive integer.
        """
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError(f"`interval` ({interval!r}) must be a positive integer.")
        self._action = action
        self._interval = interval
        self._global_step = global_step
        self._last_step = int(global_step.numpy())

    def __call__(self, output: runner.Output) -> None:
        step = int(self._global_step.numpy())
        crossed = step // self._interval > self._last_step // self._interval
        self._last_step = step
        if crossed:
            self._action(output)
