"""The writer-lease holder's checkpoint saves: none is written, and on Cloud Storage none is published, without it.

`fence_saves` makes every save of the trainer's `CheckpointManager` check the lease
with the server (`WriterLease.fence`: a conditional renewal on the generation it
holds, which also keeps the lease for another ttl) right before it writes, and
again right after; a holder that lost its lease stops with `LeaseLostError`.

On a local disk that is enough: the lease is a lock the kernel keeps for a frozen
process too, so nobody takes over while a holder is frozen. On Cloud Storage
(`gs://`, and `/gcs/` mounts) a frozen holder's lease lapses, and TensorFlow writes a
checkpoint's files itself, with no precondition (Cloud Storage has none across
objects): a holder frozen *inside* a save past its ttl would finish writing it over
the new holder's run. So there the saves are also staged:

1. TensorFlow writes the checkpoint under a prefix of this holder's own,
   `<model_dir>/.tfpipe-staging-<holder>/ckpt-<step>`, which no reader lists;
2. the holder checks its lease with the server; one that lost it stops with
   `LeaseLostError`, having published nothing;
3. it copies the files into place server-side, the data shards first and the
   `.index` last (readers list `.index` files, so a checkpoint appears complete
   or not at all), each created only if absent (`if_generation_match=0`): a
   checkpoint already in place is never overwritten (`CheckpointTakenError`),
   while a data shard without its `.index` (a publication cut short) is replaced;
4. TensorFlow's manager then records it in the state file and deletes what
   `max_to_keep` drops; the staged files are removed.

Not fenced: a freeze longer than the ttl between the check of step 2 and the few
requests of steps 3 and 4 right after it. Under `enable_async_checkpointing`
TensorFlow writes in the background, and saves are not staged.
"""

import copy
import functools
import posixpath
from typing import Any, Optional

from absl import logging
import tensorflow as tf

from tfpipe.components.common import gcs
from tfpipe.components.common.lease import LeaseLostError, WriterLease
from tfpipe.controller_core import tf_internals

STAGING_PREFIX = ".tfpipe-staging-"
INDEX = ".index"


def fence_saves(manager: tf.train.CheckpointManager, writer: WriterLease) -> tf.train.CheckpointManager:
    """Makes every `manager.save` check `writer`'s lease before it writes and after, and stages it on Cloud Storage.

    Returns:
        `manager`, whose `save` is wrapped (and, on Cloud Storage, whose checkpoint writes are staged).
    """
    if gcs.gcs_location(manager.directory) is not None:
        tf_internals.intercept_checkpoint_write(manager, functools.partial(_staged_write, writer=writer))
    save = manager.save

    def fenced_save(*args: Any, **kwargs: Any) -> Optional[str]:
        writer.fence()
        path = save(*args, **kwargs)
        try:
            writer.fence()
        except LeaseLostError as e:
            raise LeaseLostError(f"{e} The save of {path} finished after the lease was lost; another trainer "
                                 "may have written the run directory meanwhile.") from None
        return path

    manager.save = fenced_save
    return manager


class CheckpointTakenError(LeaseLostError):
    """The checkpoint being published is already in place with other content: another trainer wrote it."""


def staging_dir(model_dir: str, holder_id: str) -> str:
    """Where a holder stages its saves: `<model_dir>/.tfpipe-staging-<holder>`."""
    return f"{model_dir.rstrip('/')}/{STAGING_PREFIX}{holder_id}"


def remove_staged(model_dir: str, holder_id: str = "") -> None:
    """Removes the files staged by `holder_id`, or by every holder: what earlier holders left there (a save cut
    short, or one a lost lease stopped) is never a checkpoint. Call it holding the writer lease.

    Through google-cloud-storage (one listing, a delete per object), not `tf.io.gfile.rmtree`, which gives up on a
    folder whose existence check failed.
    """
    location = gcs.gcs_location(staging_dir(model_dir, holder_id))
    if location is None:
        return
    from google.api_core import exceptions

    bucket_name, prefix = location
    for blob in gcs.bucket(bucket_name).list_blobs(prefix=f"{prefix}/" if holder_id else prefix):
        try:
            blob.delete()
        except exceptions.NotFound:  # A delete retried after its answer was lost.
            pass


def _staged_write(write: tf_internals.CheckpointWrite, file_prefix: str, options: Optional[Any], *,
                  writer: WriterLease) -> str:
    if options is not None and options.experimental_enable_async_checkpoint:
        return write(file_prefix, options)
    staged = f"{staging_dir(writer.model_dir, writer.holder_id)}/{posixpath.basename(file_prefix)}"
    quiet = copy.copy(options) if options is not None else tf.train.CheckpointOptions()
    quiet.experimental_write_callbacks = None  # The state file and `max_to_keep`: after publication.
    try:
        try:
            write(staged, quiet)
        except Exception:
            writer.fence()  # A new holder removes earlier holders' staged files: a lost lease explains the error.
            raise
        writer.fence()
        _publish(staged, file_prefix)
    finally:
        _remove_own_staged(writer)
    tf_internals.run_write_callbacks(options, file_prefix)
    return file_prefix


def _remove_own_staged(writer: WriterLease) -> None:
    try:
        remove_staged(writer.model_dir, writer.holder_id)
    except Exception as e:  # Never a checkpoint: the next trainer removes what is left.
        logging.warning("Could not remove the staged files in %s: %s", staging_dir(writer.model_dir,
                                                                                  writer.holder_id), e)


def _publish(staged: str, file_prefix: str) -> None:
    """Copies the staged checkpoint's files to `file_prefix`, data shards first and the `.index` last, create-only."""
    bucket_name, staged_name = gcs.gcs_location(staged)
    _, final_name = gcs.gcs_location(file_prefix)
    bucket = gcs.bucket(bucket_name)
    files = {blob.name[len(staged_name):]: blob for blob in bucket.list_blobs(prefix=f"{staged_name}.")}
    if INDEX not in files:
        raise FileNotFoundError(f"The staged checkpoint {staged} has no {INDEX} file: TensorFlow did not write it.")
    index = bucket.get_blob(final_name + INDEX)  # Stated once: it decides whether data shards may be replaced.
    for suffix in sorted(files, key=lambda s: (s == INDEX, s)):
        name = final_name + suffix
        _create_only_copy(bucket, files[suffix], name, index if suffix == INDEX else bucket.get_blob(name),
                          replaceable=index is None and suffix != INDEX, checkpoint=file_prefix)


def _create_only_copy(bucket: Any, source: Any, name: str, target: Optional[Any], *, replaceable: bool,
                      checkpoint: str) -> None:
    """Copies `source` to the object `name` server-side unless it is there already (`target`, its blob or None).

    A file already there with the same content is left as it is (a publication retried, or a deterministic run's
    same bytes). Other content is replaced only when `replaceable` (a data shard without its `.index`); otherwise
    `CheckpointTakenError`. A file created meanwhile by another writer fails the copy's precondition.
    """
    from google.api_core import exceptions

    if target is not None:
        if (target.size, target.crc32c) == (source.size, source.crc32c):
            return
        if not replaceable:
            raise _taken(checkpoint)
        try:  # Left by a publication cut short (its `.index` never came): no reader ever took it for a checkpoint.
            target.delete(if_generation_match=target.generation)
        except exceptions.NotFound:
            pass
        except exceptions.PreconditionFailed:
            raise _taken(checkpoint) from None
    destination = bucket.blob(name)
    token = None
    try:
        while True:  # Within a bucket one call usually does it; a large object may take several.
            token, _, _ = destination.rewrite(source, token=token, if_generation_match=0)
            if token is None:
                return
    except exceptions.PreconditionFailed:
        raise _taken(checkpoint) from None


def _taken(checkpoint: str) -> CheckpointTakenError:
    return CheckpointTakenError(
        f"The checkpoint {checkpoint} is already in place with other content: another trainer wrote it while "
        "this one saved (its lease lapsed meanwhile). Stopping without overwriting it; a retry resumes from the "
        "newest complete checkpoint.")
