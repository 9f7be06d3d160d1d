"""Progress reporting for the controller: log lines, output formatting, steps/sec and ETA.

Lines keep Orbit's shape (`train | step: N | steps/sec: x | output: {...}`) and
go to stdout, which is what KFP and Vertex AI show as a step's log.
"""

import datetime
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfpipe.controller_core import runner


def log(message: str) -> None:
    """Prints to stdout (what KFP and Vertex show as the step's log); also to absl at debug level.

    Orbit logs every line twice (absl INFO and print), which doubles each line
    under `absl.app`, where absl INFO goes to stderr.
    """
    logging.debug(message)
    print(message, flush=True)


def format_output(output: runner.Output, indent: int = 4) -> str:
    """Formats an output dictionary for one log line (or several, when nested)."""
    if not output:
        return "{}"
    lines = []
    for key, value in sorted(output.items()):
        if isinstance(value, dict):
            nested = format_output(value, indent + 4).replace("\n", "\n" + " " * indent)
            lines.append(f"{key!r}: {nested}")
        elif isinstance(value, (float, np.floating)):
            lines.append(f"{key!r}: {float(value):.6g}")
        elif np.ndim(value) > 0:
            lines.append(f"{key!r}: <{np.asarray(value).dtype} array, shape {np.shape(value)}>")
        else:
            lines.append(f"{key!r}: {value!r}")
    one_line = "{" + ", ".join(lines) + "}"
    if len(one_line) <= 160 and "\n" not in one_line:
        return one_line
    pad = " " * indent
    return "{\n" + ",\n".join(pad + line for line in lines) + "\n" + " " * (indent - 4) + "}"


def train_line(step: int, target_step: Optional[int], output: runner.Output,
               first_loop_seconds: Optional[float] = None) -> str:
    """The log line of one train loop: step, target, steps/sec and ETA (or the first loop's time), output.

    Args:
        step: The global step after the loop.
        target_step: The step training runs to, if known.
        output: The loop's output (NumPy values), with `steps_per_second`
            unless it is the first loop.
        first_loop_seconds: The first loop's duration; it includes tracing, so
            no rate is shown for it.
    """
    target = f" | target: {target_step: 6d}" if target_step is not None else ""
    if first_loop_seconds is not None:
        rate = f"first loop: {first_loop_seconds:.2f} s incl. tracing"
    else:
        steps_per_second = float(output["steps_per_second"])
        rate = f"steps/sec: {steps_per_second: 6.1f}"
        if target_step is not None and steps_per_second > 0:
            eta = datetime.timedelta(seconds=round((target_step - step) / steps_per_second))
            rate += f" | eta: {eta}"
    return f"train | step: {step: 6d}{target} | {rate} | output: {format_output(output)}"


class StepTimer:
    """Measures steps per second over a window that `start()` opens."""

    def __init__(self, step: tf.Variable) -> None:
        """Initializes the timer and opens a window.

        Args:
            step: The step variable to read.
        """
        self.step = step
        self.start()

    def start(self, step: Optional[int] = None) -> None:
        """Opens a new window now, at `step` (default: the step variable's value)."""
        self.last_iteration = int(self.step.numpy()) if step is None else step
        self.last_time = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the window opened."""
        return time.perf_counter() - self.last_time

    def steps_per_second(self, restart: bool = True, step: Optional[int] = None) -> float:
        """Steps per second since the window opened (to `step`, default: the variable's value).

        Reopens the window when `restart`.
        """
        elapsed = self.elapsed()
        step = int(self.step.numpy()) if step is None else step
        value = (step - self.last_iteration) / elapsed if elapsed > 0 else 0.0
        if restart:
            self.start(step)
        return value
