"""What the four `python -m tfpipe.components.<name>` entry points share: flags, logging, input errors."""

import functools
import sys
from typing import Any, Callable, TypeVar

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.interface import Interface

F = TypeVar("F", bound=Callable[..., Any])


def configure_logging() -> None:
    """Keeps TensorFlow's INFO chatter (e.g. every saver callback) out of a component's log.

    The components print their own progress to stdout; absl and TensorFlow log
    warnings and errors only, unless `--verbosity` was given.
    """
    tf.get_logger().setLevel("WARNING")
    if not flags.FLAGS.is_parsed() or not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def exit_on_input_error(name: str) -> Callable[[F], F]:
    """Decorator: a `checks.InputError` (or a missing extra) ends the process with one line on stderr, status 2.

    For the KFP component bodies (`run_for_kfp`): the step's log then ends with the input's message, not a
    traceback, and the error is the same one the entry point prints.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (checks.InputError, checks.MissingExtraError) as e:
                print(f"{name}: {e}", file=sys.stderr, flush=True)
                sys.exit(2)

        return wrapper  # type: ignore[return-value]

    return decorate


def run_entry_point(interface: Interface, main: Callable[[dict], None]) -> None:
    """Defines `interface`'s flags, parses them and calls `main(values)` with them as `run()` keywords.

    A bad input (`checks.InputError`) or a missing optional dependency (`checks.MissingExtraError`) ends the
    process with one line on stderr and exit status 2, no traceback;
    any other error keeps its traceback (it is a bug or a fault, not the user's input).
    """
    interface.define_flags()

    def _main(argv: list) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}: every input is a --flag=value")
        configure_logging()
        exit_on_input_error(interface.name)(main)(interface.flag_values())

    app.run(_main)
