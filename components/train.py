"""The train component: trains a task in a run directory, resuming from its latest checkpoint.

Start it from a shell (or a container) with::

    python -m tfpipe.components.train --task=digits --model_dir=gs://bucket/runs/1 --train_steps=1000
"""

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Union

from absl import app
from absl import flags
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.controller_core import preemption
from tfpipe import checks
from tfpipe.components import runtime
from tfpipe.components.tasks.keras_runners import KerasTrainer


@dataclasses.dataclass
class TrainResult:
    """What a train run leaves behind.

    Every worker of a multi-worker run reports the same values: the chief's
    checkpoint path in `model_dir` and the loop metrics reduced over all
    replicas. Only the chief (`is_chief`) should publish them (KFP outputs).
    """

    model_dir: str
    final_step: int
    checkpoint: Optional[str]
    metrics: Dict[str, float]
    is_chief: bool = True


def run(
    *,
    task: str,
    model_dir: str,
    train_steps: int,
    task_config: Union[str, Mapping[str, Any], None] = None,
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    distribution_strategy: str = "default",
    enable_async_checkpointing: bool = False,
    deterministic: bool = True,
    max_divergence_recoveries: int = 3,
    loss_upper_bound: Optional[float] = None,
) -> TrainResult:
    """Trains `task` in `model_dir` up to `train_steps`, resuming from the latest checkpoint.

    A run that finds `model_dir` already trained to `train_steps` trains nothing
    and reports the same result. Every input is checked before any work starts.

    Under a multi-worker strategy (`TF_CONFIG`) every worker runs this; only the
    chief (see `runtime.is_chief`) writes the run config, checkpoints, the
    completion marker and summaries into `model_dir`. The other workers save
    their share of each checkpoint into a throwaway local directory (removed
    at the end) and resume from the chief's latest checkpoint in `model_dir`.

    On one worker, SIGTERM (preemption) saves a checkpoint at the next loop
    boundary and exits with status 143 for a retry to resume exactly there.
    With several workers SIGTERM ends the process as usual and the restarted
    job resumes from the last interval checkpoint.

    Args:
        task: A registered task name (e.g. `digits`) or `package.module:factory`.
        model_dir: The run directory (gs://, /gcs/ or local), shared by all components.
        train_steps: The global step to train up to.
        task_config: The task's config, a JSON object (text or mapping).
        steps_per_loop: Steps per inner loop (between logs, summaries, checks).
        checkpoint_interval: Save a checkpoint every this many steps.
        max_to_keep: Checkpoints to keep (the newest).
        distribution_strategy: One of `default`, `mirrored`, `tpu`, `multi_worker_mirrored`.
        enable_async_checkpointing: Save checkpoints in the background.
        deterministic: Turn on TensorFlow's op determinism, so that a resumed run
            ends with the same weights as an uninterrupted one (the task fixes its
            seeds; the data position is saved with each checkpoint).
        max_divergence_recoveries: When the loop's loss is NaN, infinite or above
            `loss_upper_bound`, roll back to the last checkpoint this many times
            before failing with the step and the loss.
        loss_upper_bound: A finite loss above this also counts as divergence
            (None or 0: only NaN and infinity).

    Returns:
        The final step, the final checkpoint and the last training metrics.

    Raises:
        ValueError: For a bad input (naming it), or a `model_dir` written by a
            different task or config.
    """
    inputs = runtime.TaskInputs.parse(task, task_config)
    model_dir = checks.check_uri("model_dir", model_dir)
    checks.check_positive_int("train_steps", train_steps)
    checks.check_positive_int("steps_per_loop", steps_per_loop)
    checks.check_positive_int("checkpoint_interval", checkpoint_interval)
    checks.check_positive_int("max_to_keep", max_to_keep)
    checks.check_choice("distribution_strategy", distribution_strategy, checks.STRATEGIES)
    checks.check_positive_int("max_divergence_recoveries", max_divergence_recoveries, allow_zero=True)
    if loss_upper_bound is not None and (
        isinstance(loss_upper_bound, bool) or not isinstance(loss_upper_bound, (int, float)) or loss_upper_bound < 0
    ):
        raise ValueError(f"`loss_upper_bound` must be a positive number, or 0 for none, got {loss_upper_bound!r}.")
    loss_upper_bound = loss_upper_bound or None

    runtime.check_run_config(model_dir, inputs, write=False)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    distribution = runtime.create_strategy(distribution_strategy)
    chief = runtime.is_chief(distribution)
    built = inputs.build(distribution)
    if chief:
        runtime.check_run_config(model_dir, inputs, write=True)

    trainer = built.trainer or KerasTrainer(built, distribution)
    # Every worker saves each checkpoint (TF requires it); only the chief's go to model_dir.
    multi_worker = runtime.is_multi_worker(distribution)
    extra = {"train_iterator": _checkpointable_iterator(trainer)} if not multi_worker else {}
    extra = {k: v for k, v in extra.items() if v is not None}
    with runtime.worker_checkpoint_dir(distribution, model_dir) as checkpoint_dir, \
            preemption.TerminationWatcher() as watcher:
        manager = tf.train.CheckpointManager(
            runtime.task_checkpoint(built, **extra),
            directory=checkpoint_dir,
            max_to_keep=max_to_keep,
            step_counter=built.global_step,
            checkpoint_interval=checkpoint_interval,
        )
        # Divergence is checked first: the controller saves after the actions, so a NaN state is never saved.
        actions = [orbit.actions.RecoverFromDivergence(manager, built.global_step, loss_upper_bound=loss_upper_bound,
                                                       max_recoveries=max_divergence_recoveries)]
        if multi_worker:
            # A save-on-signal needs every worker to agree on the step; a lone worker entering a save
            # would hang its peers. With several workers SIGTERM keeps its meaning, and the restarted
            # job resumes from the chief's last interval checkpoint.
            watcher.uninstall()
        controller = orbit.Controller(
            global_step=built.global_step,
            trainer=trainer,
            strategy=distribution,
            steps_per_loop=steps_per_loop,
            checkpoint_manager=manager,
            enable_async_checkpointing=enable_async_checkpointing,
            summary_dir=os.path.join(model_dir, "train") if chief else None,
            train_actions=actions,
            termination_watcher=None if multi_worker else watcher,
        )
        if not chief:
            _restore_chief_checkpoint(controller, model_dir)
        controller.train(train_steps)
        marker = runtime.read_training_complete(checkpoint_dir) or {}
        checkpoint = manager.latest_checkpoint
    if checkpoint is not None and not chief:
        # The chief saved the same checkpoint number under the same name in model_dir.
        checkpoint = os.path.join(model_dir, os.path.basename(checkpoint))
    return TrainResult(
        model_dir=model_dir,
        final_step=int(built.global_step.numpy()),
        checkpoint=checkpoint,
        metrics=dict(marker.get("train_output", {})),
        is_chief=chief,
    )


def _checkpointable_iterator(trainer: Any) -> Optional[Any]:
    """The trainer's data iterator, when it can go into a checkpoint (for an exact resume).

    A plain `tf.data` iterator (one device) is trackable; MirroredStrategy's
    distributed iterator is not, and with several workers each reads its own
    shard while only the chief's checkpoint persists. Those resume from the
    start of their data instead.
    """
    iterator = getattr(trainer, "train_iterator", None)
    return iterator if isinstance(iterator, tf.__internal__.tracking.Trackable) else None


def _restore_chief_checkpoint(controller: orbit.Controller, model_dir: str) -> None:
    """Restores a non-chief worker from the chief's latest checkpoint in `model_dir`.

    Its own checkpoint manager saves into a throwaway directory that starts
    empty, so the controller restored nothing; resuming must start every
    worker from the same weights and step as the chief, or the replicas
    diverge (and disagree on when to save).
    """
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is not None:
        controller.restore_checkpoint(latest)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the entry point's flags, named as the component's inputs."""
    runtime.define_task_flags(with_strategy=True)
    flags.DEFINE_integer("train_steps", None, "Global step to train up to.")
    flags.DEFINE_integer("steps_per_loop", 100, "Steps per inner loop.")
    flags.DEFINE_integer("checkpoint_interval", 100, "Checkpoint every this many steps.")
    flags.DEFINE_integer("max_to_keep", 5, "Checkpoints to keep.")
    flags.DEFINE_bool("enable_async_checkpointing", False, "Save checkpoints in the background.")
    flags.DEFINE_bool("deterministic", True, "Turn on op determinism (exact resume).")
    flags.DEFINE_integer("max_divergence_recoveries", 3, "Rollbacks on a NaN/inf/too large loss before failing.")
    flags.DEFINE_float("loss_upper_bound", 0.0, "A larger finite loss counts as divergence (0: none).")


def main(argv: list) -> None:
    del argv
    runtime.configure_logging()
    result = run(
        task=FLAGS.task,
        task_config=FLAGS.task_config,
        model_dir=FLAGS.model_dir,
        train_steps=FLAGS.train_steps,
        steps_per_loop=FLAGS.steps_per_loop,
        checkpoint_interval=FLAGS.checkpoint_interval,
        max_to_keep=FLAGS.max_to_keep,
        distribution_strategy=FLAGS.distribution_strategy,
        enable_async_checkpointing=FLAGS.enable_async_checkpointing,
        deterministic=FLAGS.deterministic,
        max_divergence_recoveries=FLAGS.max_divergence_recoveries,
        loss_upper_bound=FLAGS.loss_upper_bound,
    )
    print(
        f"train | done | step: {result.final_step} | checkpoint: {result.checkpoint} | metrics: {result.metrics}"
        + ("" if result.is_chief else " | non-chief worker: wrote nothing to model_dir")
    )


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["task", "model_dir", "train_steps"])
    app.run(main)
