"""The distribution strategy of a step, and this process's role in its cluster (chief or not)."""

import contextlib
import shutil
import tempfile
from typing import Iterator

import tensorflow as tf

from tfpipe import checks


def create_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the distribution strategy named by the `distribution_strategy` input.

    `default`: the default (one device); `mirrored`: all local GPUs;
    `tpu`: TPUStrategy, the TPU found from the environment; `multi_worker_mirrored`:
    workers from `TF_CONFIG`.
    """
    name = checks.check_choice("distribution_strategy", name, checks.STRATEGIES)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process is the chief of `strategy`'s cluster: the one that writes the run directory.

    The chief is task type `chief`, or no task type (one machine: default,
    MirroredStrategy, MultiWorkerMirroredStrategy without `TF_CONFIG`), or
    `worker` 0 when the cluster spec has no `chief` job (TPUStrategy's host, a
    TFJob or Vertex job without a chief pool). Read from the strategy's
    `cluster_resolver`, so it holds whatever set `TF_CONFIG` up.
    """
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type in ("chief", None):
        return True
    if resolver.task_type != "worker" or (resolver.task_id or 0) != 0:
        return False
    return "chief" not in resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (a cluster from `TF_CONFIG`)."""
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def task_name(strategy: tf.distribute.Strategy) -> str:
    """This process's place in the cluster, e.g. `worker-1` (`chief-0` on one machine), for names and logs."""
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type is None:
        return "chief-0"
    return f"{resolver.task_type}-{resolver.task_id or 0}"


@contextlib.contextmanager
def worker_checkpoint_dir(strategy: tf.distribute.Strategy, model_dir: str) -> Iterator[str]:
    """Where this process saves checkpoints: `model_dir` on the chief, a throwaway local directory elsewhere.

    Every worker of a multi-worker strategy must take part in each save (a
    save may run collective ops), but only the chief's checkpoint belongs in
    `model_dir`. The others save into a fresh directory under the local temp
    dir (`tempfile.mkdtemp`), removed when the block exits, however it exits:
    nothing of theirs lands in the shared run directory (no GCS traffic, no
    stray files for an evaluator or a user to trip over, nothing to clean up
    there after a crash), and a killed pod's local disk goes away with it.

    Args:
        strategy: The distribution strategy (its cluster resolver names the chief).
        model_dir: The run directory.

    Yields:
        The directory to give this process's `tf.train.CheckpointManager`.
    """
    if is_chief(strategy):
        yield model_dir
        return
    scratch = tempfile.mkdtemp(prefix=f"tfpipe-{task_name(strategy)}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
