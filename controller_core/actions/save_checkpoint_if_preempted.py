"""Saving a checkpoint when the cluster announces a preemption."""

from typing import Optional

import tensorflow as tf

from tfpipe.controller_core import runner


class SaveCheckpointIfPreempted:
    """After each train loop, saves a checkpoint if a preemption was signalled.

    Wraps `tf.distribute.experimental.PreemptionCheckpointHandler`, which
    watches for the platform's preemption notice (SIGTERM outside GCE) and
    agrees across workers on the step to save at. Checks happen at train-loop
    boundaries, i.e. once per `steps_per_loop`.
    """

    def __init__(
        self,
        cluster_resolver: tf.distribute.cluster_resolver.ClusterResolver,
        checkpoint_manager: tf.train.CheckpointManager,
        checkpoint_number: Optional[tf.Variable] = None,
        keep_running_after_save: bool = False,
    ) -> None:
        """Initializes the action.

        Args:
            cluster_resolver: The strategy's cluster resolver.
            checkpoint_manager: The manager to save with.
            checkpoint_number: Numbers the checkpoint (e.g. the global step).
            keep_running_after_save: Keep the process alive after the save
                (for in-process recovery); by default the handler exits it.
        """
        termination_config = None
        if keep_running_after_save:
            termination_config = tf.distribute.experimental.TerminationConfig(exit_fn=lambda: None)
        self._checkpoint_number = checkpoint_number
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            cluster_resolver, checkpoint_manager, termination_config=termination_config
        )

    def __call__(self, output: runner.Output) -> None:
        self._handler.save_checkpoint_if_preempted(checkpoint_number=self._checkpoint_number, check_interval=False)
