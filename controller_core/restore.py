"""Restoring a checkpoint and checking what it restored."""

import tensorflow as tf

from tfpipe.controller_core import tf_internals


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
        count, names = tf_internals.unmatched_variables(e)
        if not names:
            raise ValueError(f"Checkpoint {path} does not match the program: {str(e)[:500]}") from None
        count = max(count or 0, len(names))
        shown = ", ".join(names) + (f" (and {count - len(names)} more)" if count > len(names) else "")
        raise ValueError(
            f"Checkpoint {path} does not match the program: it holds no value for {count} of its "
            f"variables: {shown}."
        ) from None
    status.expect_partial()
