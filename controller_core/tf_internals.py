"""The TensorFlow internals controller_core reads, each behind one function.

TensorFlow has no public API for these facts, nor a hook around a checkpoint's
write. Each function here is the only place that reads (or sets) the internal, and
`tests/test_tf_internals.py` checks it against the installed TensorFlow (and that
this TensorFlow is one of `VERIFIED_TF_VERSIONS`), so an upgrade that moves an
internal fails loudly in the tests instead of quietly in a run.
"""

import inspect
import os
import re
from typing import Any, Callable, List, Optional, Tuple

import tensorflow as tf

# TensorFlow versions (major.minor) these functions were checked against.
VERIFIED_TF_VERSIONS = ("2.20", "2.21")

_UNMATCHED_COUNT = re.compile(r"Found (\d+) Python objects that were not bound to checkpointed values")
_UNMATCHED_VARIABLE = re.compile(r"<tf\.Variable '([^']+)'")


def checkpoint_prefix(manager: tf.train.CheckpointManager) -> str:
    """The path prefix a `CheckpointManager` saves under (`<directory>/<checkpoint_name>`).

    Reads `CheckpointManager._checkpoint_prefix`; falls back to TensorFlow's
    default name, `ckpt`, should the attribute be gone.
    """
    prefix = getattr(manager, "_checkpoint_prefix", None)
    return prefix if prefix else os.path.join(manager.directory, "ckpt")


def checkpoint_init_fn(manager: tf.train.CheckpointManager) -> Optional[Callable[[], None]]:
    """The `init_fn` given to a `CheckpointManager` (run by `restore_or_initialize()`), or None.

    Reads `CheckpointManager._init_fn`.
    """
    return getattr(manager, "_init_fn", None)


CheckpointWrite = Callable[..., str]  # `(file_prefix, options=None) -> the checkpoint's path`.


def intercept_checkpoint_write(manager: tf.train.CheckpointManager,
                               around: Callable[[CheckpointWrite, str, Any], str]) -> None:
    """Routes every write of the manager's checkpoint object through `around(write, file_prefix, options)`.

    That is every `manager.save`, and every write of the same `tf.train.Checkpoint` by anything else (another
    manager over it, `checkpoint.write`): give the manager a checkpoint object of its own.

    `write` is the checkpoint's own write (it writes the files at the prefix it is given and then runs
    `options.experimental_write_callbacks`, which is where the manager records the state file and deletes what
    `max_to_keep` drops); `around` must return the saved checkpoint's path. The checkpoint's object graph is
    unchanged: the hook is an instance attribute, not a tracked child.

    Sets `CheckpointManager._checkpoint._write`, which `CheckpointManager.save` calls.
    """
    checkpoint = manager.checkpoint
    write = checkpoint._write  # pylint: disable=protected-access

    def intercepted(file_prefix: str, options: Any = None) -> str:
        return around(write, file_prefix, options)

    checkpoint._write = intercepted  # pylint: disable=protected-access


def run_write_callbacks(options: Any, save_path: str) -> None:
    """Runs `options.experimental_write_callbacks` as the checkpoint's write would (each with the path if it takes
    one argument, else with none)."""
    for callback in (options.experimental_write_callbacks or []) if options is not None else []:
        if len(inspect.signature(callback).parameters) == 1:
            callback(save_path)
        else:
            callback()


def unmatched_variables(error: AssertionError) -> Tuple[Optional[int], List[str]]:
    """Parses the error of `CheckpointLoadStatus.assert_existing_objects_matched()`.

    TensorFlow's message counts the program's objects that got no value from
    the checkpoint and shows up to ten of them.

    Returns:
        The number of unmatched objects (None when the message does not say)
        and the names of the variables among those shown, sorted.
    """
    text = str(error)
    count = _UNMATCHED_COUNT.search(text)
    return (int(count.group(1)) if count else None), sorted(_UNMATCHED_VARIABLE.findall(text))
