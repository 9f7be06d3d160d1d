"""The check-inputs step's work (see `tfpipe.components.check_inputs.definition`)."""

from typing import Any, Tuple

from tfpipe.components import entry_point
from tfpipe.components.common import eval_setup
from tfpipe.components.common import probe
from tfpipe.components.common import strategy as strategy_lib
from tfpipe.components.check_inputs.inputs import INTERFACE


@entry_point.exit_on_input_error("check_inputs")
@INTERFACE.takes_inputs()
def run(args: Any) -> Tuple[str, str]:
    """Checks the inputs (see `INTERFACE`) and returns the effective best metric and mode.

    The task is built on one device and one batch of its train and eval data goes through its model, loss,
    metrics and serving signature (`tfpipe.components.common.probe`), so a shape or dtype mistake fails here, in seconds.

    Raises:
        checks.InputError: For the first bad input, naming it.
    """
    metrics = [m for m in [args.best_metric, *args.thresholds] if m]
    built = eval_setup.load_task(args, distribution=strategy_lib.create_strategy("default"), metrics=metrics,
                                 for_training=True, runners=["trainer", "evaluator"], probe_splits=probe.SPLITS)
    metric = args.best_metric or built.best_metric
    mode = args.best_mode or built.best_mode
    print(f"check_inputs | task {args.task!r} | best checkpoint by {metric} ({mode}) | thresholds: "
          f"{sorted(args.thresholds) or 'none'} | one batch fits the model, loss, metrics and serving signature | all inputs are valid", flush=True)
    return metric, mode
