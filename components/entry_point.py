"""What the `python -m tfpipe.components.<name>` entry points share: flags, logging, input errors."""

import functools
import logging as py_logging
import sys
import traceback
from typing import Any, Callable, TypeVar

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.interface import Interface
from tfpipe.components.tasks import config as config_lib

F = TypeVar("F", bound=Callable[..., Any])


def configure_logging() -> None:
    """Keeps TensorFlow's INFO chatter (e.g. every saver callback) out of a component's log.

    The components print their own progress to stdout; absl and TensorFlow log
    warnings and errors only, unless `--verbosity` was given.
    """
    tf.get_logger().setLevel("WARNING")
    if not flags.FLAGS.is_parsed() or not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


class _HideFromEnv(py_logging.Filter):
    """Replaces values read for `from_env` references in every log record with `<from_env NAME>`."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = config_lib.hidden(message)
        if shown != message:
            record.msg, record.args = shown, ()
        return True


def _maybe_hide_from_env_in_logs() -> None:
    """Adds `_HideFromEnv` to the handlers of Python's root logger and TensorFlow's (absl logs through the root's)."""
    for logger in (py_logging.getLogger(), tf.get_logger()):
        for handler in logger.handlers:
            if not any(isinstance(f, _HideFromEnv) for f in handler.filters):
                handler.addFilter(_HideFromEnv())


def exit_on_input_error(name: str) -> Callable[[F], F]:
    """Decorator: a `checks.InputError` (or a missing extra) ends the process with one line on stderr, status 2;
    a `checks.RefusedError` (an export gate missed) with one line `<name>: refused: <why>`, status 1.

    For the KFP component bodies (`run_for_kfp`): the step's log then ends with the input's message, not a
    traceback, and the error is the same one the entry point prints. Values read for `from_env` references
    never appear in a log line or a message: any other error whose traceback holds one is printed with
    `<from_env NAME>` in its place, and ends the process with status 1.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _maybe_hide_from_env_in_logs()
            try:
                return fn(*args, **kwargs)
            except (*checks.INPUT_ERRORS, checks.RefusedError) as e:
                refused = isinstance(e, checks.RefusedError)  # Declined for a stated reason, not a bad input.
                print(f"{name}: {checks.REFUSED_PREFIX if refused else ''}{config_lib.hidden(str(e))}",
                      file=sys.stderr, flush=True)
                sys.exit(1 if refused else 2)
            except Exception as e:  # pylint: disable=broad-except
                text = "".join(traceback.format_exception(e))
                if config_lib.hidden(text) == text:
                    raise
                print(config_lib.hidden(text), file=sys.stderr, flush=True)
                sys.exit(1)

        return wrapper  # type: ignore[return-value]

    return decorate


def run_entry_point(interface: Interface, main: Callable[[dict], None]) -> None:
    """Defines `interface`'s flags, parses them and calls `main(values)` with them as `run()` keywords.

    A bad input (`checks.InputError`) or a missing optional dependency (`checks.MissingExtraError`) ends the
    process with one line on stderr and exit status 2, no traceback; a refusal (`checks.RefusedError`, e.g. a
    missed export threshold) with one line and status 1; any other error keeps its traceback (it is a bug or a
    fault, not the user's input).
    """
    interface.define_flags()

    def _main(argv: list) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}: every input is a --flag=value")
        configure_logging()
        exit_on_input_error(interface.name)(main)(interface.flag_values())

    app.run(_main)
