"""The train component: trains a task in a run directory, resuming from its latest checkpoint.

Start it from a shell (or a container) with::

    python -m tfpipe.components.train --task=digits --model_dir=gs://bucket/runs/1 --train_steps=1000

Its inputs are declared in `tfpipe.components.train.inputs.INTERFACE`.
"""

import contextlib
import os
from typing import Any, Dict, Optional

import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.components.common import attempts
from tfpipe.components.common import checkpoints
from tfpipe.components.common import data_identity
from tfpipe.components import entry_point
from tfpipe.components.common import fenced_saves
from tfpipe.components.common import lease
from tfpipe.components.common import precision as precision_lib
from tfpipe.components.common import probe
from tfpipe.components.common import profiling
from tfpipe.components.common import run_config
from tfpipe.components.common import strategy as strategy_lib
from tfpipe.components.common import summaries
from tfpipe.components import tasks
from tfpipe.components.train import outputs as train_outputs
from tfpipe.components.common import vertex_env
from tfpipe.components.common.data import DataInputs
from tfpipe.components.train.inputs import INTERFACE
from tfpipe.components.tasks.keras_runners import KerasTrainer
from tfpipe.components.train.outputs import TrainResult
from tfpipe.controller_core import preemption
from tfpipe.controller_core import run_dir


@INTERFACE.takes_inputs()
@attempts.guarded("train")
def run(args: Any) -> TrainResult:
    """Trains `task` in `model_dir` up to `train_steps`, resuming from the latest checkpoint.

    Every input is checked before any work starts (see `INTERFACE` for each
    one's meaning). A run that finds `model_dir` already trained to
    `train_steps` trains nothing and reports the same result. The run config is
    recorded once the task is built; a `model_dir` trained with another task or
    config is refused. `train_data` and `eval_data` reach the task as its factory's
    `data` keyword (`tfpipe.components.common.data`); their content fingerprints are
    recorded with the run config, and a `model_dir` trained on other data is refused
    (the same data at another URI is not other data). One trainer at a time writes a run directory (a writer
    lease, taken before the run config is compared for good, recorded, or a
    checkpoint restored); checkpoint files whose state file is missing or unreadable are
    recovered, never trained over.

    Under a multi-worker strategy (`TF_CONFIG`) every worker runs this; only the
    chief writes the run config, checkpoints, the completion marker and
    summaries into `model_dir`. The other workers save their share of each
    checkpoint into a throwaway local directory (removed at the end) and resume
    from the chief's latest checkpoint in `model_dir`.

    On one worker, SIGTERM (preemption) saves a checkpoint at the next loop
    boundary and exits with status 143 for a retry to resume exactly there.
    With several workers SIGTERM ends the process as usual and the restarted
    job resumes from the last interval checkpoint.

    `precision` and `jit_compile` apply to the generic Keras trainer (a task with
    its own trainer keeps control of both, see `tfpipe.components.common.precision`);
    `profile_steps` traces a step range into `<model_dir>/train/` on the chief
    (`tfpipe.components.common.profiling`). Where Vertex sets `AIP_CHECKPOINT_DIR` and
    `AIP_TENSORBOARD_LOG_DIR`, an empty `model_dir` is the former and the
    summaries are copied into the latter (`tfpipe.components.common.vertex_env`).

    Before anything else, one batch of the train data goes through the model, loss, metrics and serving signature
    (`tfpipe.components.common.probe`, on one device). A failure is recorded in `<model_dir>/failures/train.json`: a retry
    with the same inputs after a failure that repeats, with no checkpoint yet, fails at once
    (`tfpipe.components.common.attempts`).

    Returns:
        The final step, the final checkpoint and the last training metrics.

    Raises:
        checks.InputError: For a bad input (naming it), or a `model_dir` trained with another task or config.
        lease.LeaseHeldError: If another trainer holds `model_dir`.
    """
    ttl = lease.ttl_from_env()  # Inputs like any other: checked before the task is built.
    wait = lease.wait_from_env(ttl)
    package = tasks.install_task_package(args.task_package)
    tasks.resolve_factory(args.task)
    data = DataInputs.from_inputs(args)
    data_fingerprints = data_identity.identify(data)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    distribution = strategy_lib.create_strategy(args.distribution_strategy)
    chief = strategy_lib.is_chief(distribution)
    with distribution.scope(), precision_lib.policy_scope(args.precision):
        built = tasks.build_task(args.task, args.task_config, data)
    precision_lib.check_generic_runner(built, precision=args.precision, jit_compile=args.jit_compile,
                                       runner="trainer")
    probe.maybe_probe(built, distribution, splits=["train"])
    wanted = run_config.with_data(run_config.run_config(args.task, built, args.task_config, args.precision, package),
                                  data_fingerprints)
    run_config.check_run_config(args.model_dir, wanted, for_training=True)  # Early: fails without waiting.
    trainer = built.trainer or KerasTrainer(built, distribution, precision=args.precision,
                                            jit_compile=args.jit_compile)

    writer = lease.WriterLease(args.model_dir, ttl=ttl, wait=wait) if chief else None
    with writer or _no_lease(), \
            strategy_lib.worker_checkpoint_dir(distribution, args.model_dir) as checkpoint_dir, \
            preemption.TerminationWatcher() as watcher:
        if chief:  # Under the lease: the run config another trainer recorded while this one waited counts.
            run_config.check_run_config(args.model_dir, wanted, for_training=True)
            checkpoints.recover_checkpoint_state(args.model_dir)
            run_config.record_run_config(args.model_dir, wanted)
            if built.write_run_files is not None:
                built.write_run_files(args.model_dir)
        multi_worker = strategy_lib.is_multi_worker(distribution)
        extra = {} if multi_worker or not built.checkpoint_train_iterator else {
            "train_iterator": _checkpointable_iterator(trainer)}
        if built.trainer is None:
            extra.update(trainer.checkpoint_items)  # The loss scale, under mixed_float16.
        manager = tf.train.CheckpointManager(
            checkpoints.task_checkpoint(built, **{k: v for k, v in extra.items() if v is not None}),
            directory=checkpoint_dir,
            max_to_keep=args.max_to_keep,
            step_counter=built.global_step,
            checkpoint_interval=args.checkpoint_interval,
            init_fn=built.init_fn,
        )
        if writer is not None:
            fenced_saves.fence_saves(manager, writer)  # Checked with the server; staged on Cloud Storage.
        # Actions run before the controller's save: a lost lease or a diverged state is never saved.
        actions = [orbit.actions.RecoverFromDivergence(
            manager, built.global_step, loss_key=built.loss_name, loss_upper_bound=args.loss_upper_bound or None,
            max_recoveries=args.max_divergence_recoveries)]
        if writer is not None:
            actions.insert(0, writer.check)
        if multi_worker:
            # A save-on-signal needs every worker to agree on the step; a lone worker entering a save
            # would hang its peers. With several workers SIGTERM keeps its meaning, and the restarted
            # job resumes from the chief's last interval checkpoint.
            watcher.uninstall()
        summary_dir = os.path.join(args.model_dir, "train") if chief else None
        profile = profiling.maybe_profile(
            args.profile_steps, summary_dir, global_step=built.global_step,
            copies=[d for d in [vertex_env.tensorboard_dir("train")] if d])
        if profile is not None:
            actions.append(profile)  # Last: it sees the step after a rollback.
        controller = orbit.Controller(
            global_step=built.global_step,
            trainer=trainer,
            strategy=distribution,
            steps_per_loop=profile.steps_per_loop(args.steps_per_loop) if profile else args.steps_per_loop,
            checkpoint_manager=manager,
            enable_async_checkpointing=args.enable_async_checkpointing,
            summary_manager=summaries.summary_manager(summary_dir, "train", tf.summary.scalar, built.global_step),
            train_actions=actions,
            termination_watcher=None if multi_worker else watcher,
        )
        if not chief:
            _restore_chief_checkpoint(controller, args.model_dir)
        with profile or contextlib.nullcontext():
            controller.train(args.train_steps)
        marker = run_dir.read_training_complete(checkpoint_dir) or {}
        checkpoint = manager.latest_checkpoint
    if checkpoint is not None and not chief:
        # The chief saved the same checkpoint number under the same name in model_dir.
        checkpoint = os.path.join(args.model_dir, os.path.basename(checkpoint))
    return TrainResult(
        model_dir=args.model_dir,
        final_step=int(built.global_step.numpy()),
        checkpoint=checkpoint,
        metrics=dict(marker.get("train_output", {})),
        is_chief=chief,
    )


class _no_lease:
    """A non-chief worker writes nothing in `model_dir`, and takes no lease."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


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
    latest = checkpoints.latest_complete_checkpoint(model_dir)
    if latest is not None:
        controller.restore_checkpoint(latest)


@entry_point.exit_on_input_error("train")
def run_for_kfp(*, model: Any, metrics: Any, **inputs: Any) -> tuple:
    """The KFP component's body: `run(**inputs)`, then its outputs (see `tfpipe.components.train.definition`)."""
    return train_outputs.publish(run(**inputs), model=model, metrics=metrics)


def main(values: Dict[str, Any]) -> None:
    result = run(**values)
    print(
        f"train | done | step: {result.final_step} | checkpoint: {result.checkpoint} | metrics: {result.metrics}"
        + ("" if result.is_chief else " | non-chief worker: wrote nothing to model_dir")
    )

