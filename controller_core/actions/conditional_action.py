"""An action that runs other actions only when a condition holds."""

from typing import Any, Callable, Sequence, Union

from tfpipe.controller_core import runner

Action = Callable[[runner.Output], None]
Condition = Callable[[runner.Output], Any]


class ConditionalAction:
    """Runs `action` (or each of several actions, in order) when `condition(output)` is true.

    Separates *when* from *what*: e.g.
    `ConditionalAction(condition=best.test, action=[export, best.commit])`
    exports on a new best metric and records the new best only after the export
    succeeded.
    """

    def __init__(self, condition: Condition, action: Union[Action, Sequence[Action]]) -> None:
        """Initializes the action.

        Args:
            condition: Called with the output; its result (a bool, or a scalar
                bool tensor) decides whether the actions run.
            action: One action or a sequence of actions.
        """
        self.condition = condition
        self.action = action

    def __call__(self, output: runner.Output) -> None:
        if self.condition(output):
            for action in self.action if isinstance(self.action, (list, tuple)) else (self.action,):
                action(output)
