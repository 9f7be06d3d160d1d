"""What every component sets up: input checks, the strategy, the task, its checkpoint."""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.controller_core import checkpoint_watcher
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import run_dir

RUN_CONFIG = "run_config.json"


def configure_logging() -> None:
    """Keeps TensorFlow's INFO chatter (e.g. every saver callback) out of a component's log.

    The components print their own progress to stdout; absl and TensorFlow log
    warnings and errors only, unless `--verbosity` was given.
    """
    tf.get_logger().setLevel("WARNING")
    if not flags.FLAGS.is_parsed() or not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def define_task_flags(*, with_strategy: bool = True) -> None:
    """Defines the flags every component entry point shares: task, task_config, model_dir (and distribution_strategy)."""
    flags.DEFINE_string("task", None, "Registered task name (e.g. digits) or package.module:factory.")
    flags.DEFINE_string("task_config", "", "The task's config as a JSON object.")
    flags.DEFINE_string("model_dir", None, "Run directory: gs://bucket/path, /gcs/bucket/path or a local path.")
    if with_strategy:
        flags.DEFINE_enum("distribution_strategy", "default", list(checks.STRATEGIES),
                          "TensorFlow distribution strategy.")


def create_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the distribution strategy named by the `distribution_strategy` input.

    `default`: the default (one device); `mirrored`: all local GPUs;
    `tpu`: TPUStrategy, the TPU found from the environment; `multi_worker_mirrored`:
    workers from `TF_CONFIG`.
    """
    checks.check_choice("distribution_strategy", name, checks.STRATEGIES)
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


@dataclasses.dataclass
class TaskInputs:
    """The checked task inputs: the name (or reference) and its config dictionary."""

    task: str
    config: Dict[str, Any]

    @classmethod
    def parse(cls, task: Any, task_config: Union[str, Mapping[str, Any], None]) -> "TaskInputs":
        """Checks the task name resolves and the config is a JSON object (its keys are checked on build)."""
        tasks.resolve_factory(task)
        return cls(task=task, config=checks.parse_json_object(task_config, input_name="task_config"))

    def build(self, strategy: tf.distribute.Strategy) -> tasks.Task:
        """Builds the task inside the strategy's scope."""
        with strategy.scope():
            return tasks.build_task(self.task, self.config)

    def as_json(self) -> Dict[str, Any]:
        return {"task": self.task, "task_config": self.config}


def task_checkpoint(task: tasks.Task, **extra: Any) -> tf.train.Checkpoint:
    """The checkpoint layout every component shares: model, optimizer (its iterations = global step), extras."""
    return tf.train.Checkpoint(model=task.model, optimizer=task.optimizer, **task.checkpoint_items, **extra)


def check_run_config(model_dir: str, inputs: TaskInputs, *, write: bool) -> None:
    """Refuses a model_dir written with another task or config; writes the run config once when `write`.

    Raises:
        ValueError: If `model_dir` holds a run config for a different task or task config.
    """
    path = os.path.join(model_dir, RUN_CONFIG)
    stored = run_dir.read_json(path)
    wanted = inputs.as_json()
    if stored is None:
        if write:
            run_dir.write_json_atomic(path, wanted, overwrite=False)
        return
    mismatched = {k: stored.get(k) for k in wanted if stored.get(k) != wanted[k]}
    if mismatched:
        raise ValueError(
            f"`model_dir` ({model_dir}) was written by a run with {json.dumps(mismatched, sort_keys=True)}, "
            f"not {json.dumps({k: wanted[k] for k in mismatched}, sort_keys=True)}. Use a new `model_dir`, "
            "or the same `task` and `task_config`; nothing was changed."
        )


def read_training_complete(model_dir: str) -> Optional[Dict[str, Any]]:
    """The completion marker `Controller.train` wrote in `model_dir`, if any."""
    return run_dir.read_json(os.path.join(model_dir, run_dir.TRAINING_COMPLETE))


def scalar_summary(name: str, value: Any, step: Any) -> None:
    """A `SummaryManager` summary function: scalars to TensorBoard, other values (matrices) skipped."""
    if np.ndim(value) == 0:
        tf.summary.scalar(name, value, step=step)


def eval_summary_manager(model_dir: str, eval_name: str, global_step: tf.Variable) -> orbit.utils.SummaryManager:
    """The summary manager of evaluator `eval_name`: scalars into `<model_dir>/eval/<eval_name>/`."""
    return orbit.utils.SummaryManager(eval_records.eval_dir(model_dir, eval_name), scalar_summary, global_step)


CHECKPOINT_SELECTORS = "'latest', 'best', a step number, or a checkpoint path"


def resolve_checkpoint(model_dir: str, checkpoint: Any, eval_name: str) -> str:
    """Resolves a `checkpoint` input to a checkpoint path.

    Args:
        model_dir: The run directory.
        checkpoint: `latest` (the newest checkpoint in `model_dir`), `best` (the
            checkpoint pinned by evaluator `eval_name`), a step number (int or
            digits), or a checkpoint path (prefix).
        eval_name: The evaluator whose best checkpoint `best` means.

    Raises:
        ValueError: If the selector is malformed or names no existing checkpoint;
            the message says what exists.
    """
    available = checkpoint_watcher.list_checkpoints(model_dir)
    if checkpoint == "latest":
        if not available:
            raise ValueError(f"`checkpoint` is 'latest' but `model_dir` ({model_dir}) holds no checkpoint yet.")
        return available[max(available)]
    if checkpoint == "best":
        best = eval_records.read_best_record(eval_records.eval_dir(model_dir, eval_name))
        if best is None:
            raise ValueError(
                f"`checkpoint` is 'best' but evaluator {eval_name!r} has no best checkpoint in {model_dir} "
                "(run continuous_eval with a best metric first, or pass 'latest' or a step)."
            )
        return best["best_checkpoint"]
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool) or (
        isinstance(checkpoint, str) and checkpoint.isdigit()
    ):
        step = int(checkpoint)
        if step not in available:
            raise ValueError(
                f"`checkpoint` is step {step}, but `model_dir` ({model_dir}) has checkpoints at steps "
                f"{sorted(available)}."
            )
        return available[step]
    if isinstance(checkpoint, str) and checkpoint:
        if not tf.io.gfile.exists(f"{checkpoint}.index"):
            raise ValueError(f"`checkpoint` ({checkpoint!r}) is no checkpoint: {checkpoint}.index does not exist.")
        return checkpoint
    raise ValueError(f"`checkpoint` must be {CHECKPOINT_SELECTORS}, got {checkpoint!r}.")
