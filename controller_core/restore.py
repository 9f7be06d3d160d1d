"""Restoring a checkpoint and checking what it restored."""

import re

import tensorflow as tf


def restore_checked(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores `path` into `checkpoint`, requiring a value for every variable the program has.

    Values in the checkpoint that the program does not create (an evaluator
    restoring a trainer's checkpoint has no optimizer slots) are ignored quietly,
    instead of TensorFlow's "Unresolved object in checkpoint" warnings.

    Args:
        checkpoint: The program's `tf.train.Checkpoint`.
        path: The checkpoint prefix to restore.

    Raises:
        ValueError: If the checkpoint holds no value for some of the program's
            variables; the message names them.
        tf.errors.NotFoundError: If the checkpoint does not exist (any more).
    """
    status = checkpoint.restore(path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        missing = sorted(re.findall(r"<tf\.Variable '([^']+)'", str(e))) or [str(e)[:500]]
        raise ValueError(
            f"Checkpoint {path} does not match the program: it holds no value for "
            f"{len(missing)} of its variables: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}."
        ) from None
    status.expect_partial()
