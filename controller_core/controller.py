"""The outer training and evaluation loop: `Controller`.

A drop-in for `orbit.Controller`: the same constructor, methods, defaults, and
the protected methods and attributes subclasses use. Where Orbit fails silently
it has defined behaviour instead (the README's table "What behaves differently
from Orbit, on purpose"). The loop::

    while global_step < steps:
        _train_n_steps(min(steps - global_step, steps_per_loop))
            # trainer.train(n); train actions; log; summaries
        _maybe_save_checkpoint()     # when an interval boundary was crossed
    save a final checkpoint; wait for async saves; write the completion marker

Continuous evaluation lives in `continuous_eval`, the completion marker's
file in `run_dir`, SIGTERM handling in `preemption`.
"""

import time
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from absl import logging
import numpy as np
import tensorflow as tf

from tfpipe.controller_core import checkpoint_watcher
from tfpipe.controller_core import continuous_eval
from tfpipe.controller_core import keras3
from tfpipe.controller_core import preemption
from tfpipe.controller_core import progress
from tfpipe.controller_core import restore
from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner
from tfpipe.controller_core import tf_internals
from tfpipe.controller_core import utils

Action = Callable[[runner.Output], None]
StepsPerLoop = Union[int, Callable[[int], int]]


# Orbit's module-level names, for code that imports them from here.
_log = progress.log
_format_output = progress.format_output
StepTimer = progress.StepTimer


def _check_arguments(trainer, evaluator, steps_per_loop, summary_interval, global_step) -> None:
    """Orbit's constructor checks, with messages that echo the values."""
    if trainer is None and evaluator is None:
        raise ValueError("`trainer` and `evaluator` should not both be `None`.")
    if trainer is not None:
        if steps_per_loop is None:
            raise ValueError("`steps_per_loop` is required when `trainer` is provided.")
        if not callable(steps_per_loop) and (
            not isinstance(steps_per_loop, int) or isinstance(steps_per_loop, bool) or steps_per_loop < 1
        ):
            raise ValueError(f"`steps_per_loop` ({steps_per_loop!r}) must be a positive integer or a callable.")
        if summary_interval is not None:
            if summary_interval <= 0:
                raise ValueError(f"`summary_interval` ({summary_interval}) must be larger than 0.")
            if not callable(steps_per_loop) and summary_interval % steps_per_loop != 0:
                raise ValueError(
                    f"`summary_interval` ({summary_interval}) must be a multiple of "
                    f"`steps_per_loop` ({steps_per_loop})."
                )
    if keras3.is_keras3(global_step):
        raise ValueError(keras3.describe("global_step", global_step))
    if not isinstance(global_step, tf.Variable):
        raise ValueError(f"`global_step` must be a `tf.Variable`, got {type(global_step).__name__}: {global_step!r}.")


class Controller:
    """Runs training, evaluation, checkpointing and summaries around runners.

    The inner loops belong to `trainer` (an `AbstractTrainer`) and `evaluator`
    (an `AbstractEvaluator`); the controller decides how many steps each call
    runs, saves checkpoints through a `tf.train.CheckpointManager` (checkpoint
    number = global step), writes outputs to TensorBoard and calls actions
    (`Callable[[Output], None]`) after each train loop and each evaluation.
    Subclass it to change the outer loop, as with Orbit.
    """

    def __init__(
        self,
        *,  # All arguments are keyword-only.
        global_step: tf.Variable,
        trainer: Optional[runner.AbstractTrainer] = None,
        evaluator: Optional[runner.AbstractEvaluator] = None,
        strategy: Optional[tf.distribute.Strategy] = None,
        train_actions: Optional[Iterable[Action]] = None,
        eval_actions: Optional[Iterable[Action]] = None,
        steps_per_loop: Optional[StepsPerLoop] = None,
        checkpoint_manager: Optional[tf.train.CheckpointManager] = None,
        enable_async_checkpointing: bool = False,
        summary_interval: Optional[int] = None,
        summary_dir: Optional[str] = None,
        eval_summary_dir: Optional[str] = None,
        summary_manager: Optional[utils.SummaryManagerInterface] = None,
        eval_summary_manager: Optional[utils.SummaryManagerInterface] = None,
        allow_evaluate_initial_weights: bool = False,
        termination_watcher: Optional[preemption.TerminationWatcher] = None,
    ) -> None:
        """Initializes the controller and restores the latest checkpoint, if any.

        Args:
            global_step: The integer `tf.Variable` counting training steps
                (e.g. `optimizer.iterations`, `utils.create_global_step()`).
            trainer: Runs the inner training loop.
            evaluator: Runs the inner evaluation loop.
            strategy: The `tf.distribute.Strategy`; default: the one in scope.
            train_actions: Called with the raw output of every `trainer.train`.
            eval_actions: Called with the raw output of every `evaluator.evaluate`.
            steps_per_loop: Steps per `trainer.train` call (required with a
                trainer): a positive int, or a callable of the global step.
            checkpoint_manager: Saves and restores checkpoints; its latest
                checkpoint is restored here (or its `init_fn` runs).
            enable_async_checkpointing: Save checkpoints in the background.
            summary_interval: Step interval for `tf.summary` calls inside
                `trainer.train`; a multiple of an int `steps_per_loop`.
            summary_dir: Directory for training summaries; `None` writes none.
            eval_summary_dir: Directory for evaluation summaries (default:
                `summary_dir`).
            summary_manager: Replaces the one built from `summary_dir`.
            eval_summary_manager: Replaces the one built from `eval_summary_dir`
                (always, even when both directories are the same).
            allow_evaluate_initial_weights: Let `evaluate()` run on weights that
                were neither restored, set by `init_fn`, nor trained.
            termination_watcher: After SIGTERM, training saves a checkpoint at
                the next loop boundary and raises `preemption.Preempted`.

        Raises:
            ValueError: For an invalid argument (see Orbit), or when the latest
                checkpoint does not hold the program's variables.
        """
        _check_arguments(trainer, evaluator, steps_per_loop, summary_interval, global_step)
        self.trainer = trainer
        self.evaluator = evaluator
        self.strategy = strategy or tf.distribute.get_strategy()
        self.train_actions = tuple(train_actions or ())
        self.eval_actions = tuple(eval_actions or ())
        self.global_step = global_step
        self.checkpoint_manager = checkpoint_manager
        self._enable_async_checkpoint_saving = enable_async_checkpointing
        self._checkpoint_options = tf.train.CheckpointOptions(enable_async=enable_async_checkpointing)
        self._allow_evaluate_initial_weights = allow_evaluate_initial_weights
        self._termination_watcher = termination_watcher

        if trainer is not None:
            self.step_timer: Optional[StepTimer] = None
            self.summary_interval = summary_interval
            self._steps_per_loop = steps_per_loop
            self.summary_manager = summary_manager or utils.SummaryManager(
                summary_dir, tf.summary.scalar, global_step=global_step
            )
        if evaluator is not None:
            eval_summary_dir = eval_summary_dir or summary_dir
            if eval_summary_manager is not None:
                self.eval_summary_manager = eval_summary_manager
            elif trainer is not None and eval_summary_dir == summary_dir:
                self.eval_summary_manager = self.summary_manager
            else:
                self.eval_summary_manager = utils.SummaryManager(
                    eval_summary_dir, tf.summary.scalar, global_step=global_step
                )

        tf.summary.experimental.set_step(global_step)

        # Weights are "ready" to evaluate once restored, initialized by the manager's init_fn, or trained here.
        self._weights_ready = False
        self._last_saved_step: Optional[int] = None
        self._last_train_output: runner.Output = {}
        self._train_target: Optional[int] = None
        self.last_continuous_eval: Optional[continuous_eval.ContinuousEvalStats] = None
        if checkpoint_manager is not None:
            self.restore_checkpoint()
        self._interval_anchor = int(global_step.numpy())

    def train(self, steps: int, checkpoint_at_completion: bool = True) -> None:
        """Trains until `global_step` reaches `steps` (an absolute step, not a count).

        Saves a checkpoint whenever a multiple of `checkpoint_interval` is
        crossed; with `checkpoint_at_completion`, also at the end (even when
        already at `steps`), followed by the completion marker.

        Args:
            steps: The global step to train up to.
            checkpoint_at_completion: Whether to save a checkpoint at the end,
                whatever the interval.

        Raises:
            ValueError: If there is no trainer.
            RuntimeError: If `trainer.train(n)` does not advance `global_step`.
        """
        self._require("trainer", for_method="train")
        if self.checkpoint_manager is not None:
            run_dir.clear_stale_training_complete(self.checkpoint_manager.directory, steps)
        current_step = int(self.global_step.numpy())
        _log(f"train | step: {current_step: 6d} | training until step {steps}...")
        self._train_target = steps  # For the log lines' target and ETA.
        try:
            while current_step < steps:
                self._maybe_stop_for_termination(current_step)
                self._train_n_steps(min(steps - current_step, self._loop_steps(current_step)))
                self._maybe_save_checkpoint()
                current_step = int(self.global_step.numpy())
        finally:
            self._train_target = None
        self._maybe_stop_for_termination(current_step)
        if checkpoint_at_completion:
            self._maybe_save_checkpoint(check_interval=False)
        self._sync_on_async_checkpointing()
        if checkpoint_at_completion:
            self._maybe_write_training_complete(steps)

    def evaluate(self, steps: int = -1) -> Optional[runner.Output]:
        """Runs one evaluation of `steps` steps (`-1`: the whole evaluation dataset).

        Args:
            steps: Positive number of steps, or -1.

        Returns:
            The output as NumPy values, with `steps_per_second` when `steps > 0`.

        Raises:
            ValueError: If there is no evaluator, `steps` is neither positive nor
                -1, or the weights were neither restored, set by `init_fn`, nor
                trained (unless `allow_evaluate_initial_weights`).
        """
        self._require("evaluator", for_method="evaluate")
        if steps > 0:
            steps_msg = f"running {steps} steps of evaluation..."
        elif steps == -1:
            steps_msg = "running complete evaluation..."
        else:
            raise ValueError(f"`steps` ({steps}) should be > 0, or == -1.")
        self._check_weights_ready()

        current_step = int(self.global_step.numpy())
        _log(f" eval | step: {current_step: 6d} | {steps_msg}")
        start = time.perf_counter()
        with self.eval_summary_manager.summary_writer().as_default():
            output = self.evaluator.evaluate(tf.convert_to_tensor(steps, dtype=tf.int32))
        elapsed = time.perf_counter() - start

        output = output or {}
        for action in self.eval_actions:
            action(output)
        output = tf.nest.map_structure(utils.get_value, output)

        rate_msg = ""
        if steps > 0:
            output["steps_per_second"] = steps / elapsed
            rate_msg = f"steps/sec: {steps / elapsed: 6.1f} | "
        _log(
            f" eval | step: {current_step: 6d} | {rate_msg}eval time: {elapsed: 6.1f} sec | "
            f"output: {_format_output(output)}"
        )
        self.eval_summary_manager.write_summaries(output)
        self.eval_summary_manager.flush()
        return output

    def train_and_evaluate(
        self,
        train_steps: int,
        eval_steps: int = -1,
        eval_interval: Optional[int] = None,
    ) -> Optional[runner.Output]:
        """Alternates `train()` and `evaluate()` until `global_step` reaches `train_steps`.

        Args:
            train_steps: The global step to train up to.
            eval_steps: Steps per evaluation; -1 for the whole evaluation dataset.
            eval_interval: Training steps between evaluations; a train loop is cut
                short to honour it. `None`: evaluate only at the end.

        Returns:
            The output of the last evaluation (None when no training was needed).

        Raises:
            ValueError: If the trainer or evaluator is missing, or `eval_interval`
                is invalid.
        """
        self._require("trainer", for_method="train_and_evaluate")
        self._require("evaluator", for_method="train_and_evaluate")
        if eval_interval is not None and (not isinstance(eval_interval, (int, np.integer)) or eval_interval < 1):
            raise ValueError(f"`eval_interval` ({eval_interval!r}) must be a positive integer or None.")

        output = None
        current_step = int(self.global_step.numpy())
        interval = eval_interval or (train_steps - current_step)
        while current_step < train_steps:
            self.train(steps=min(train_steps, current_step + interval), checkpoint_at_completion=False)
            output = self.evaluate(steps=eval_steps)
            current_step = int(self.global_step.numpy())
        self._maybe_save_checkpoint(check_interval=False)
        self._sync_on_async_checkpointing()
        self._maybe_write_training_complete(train_steps)
        return output

    def evaluate_continuously(
        self,
        steps: int = -1,
        timeout: Optional[Union[int, float]] = None,
        timeout_fn: Optional[Callable[[], bool]] = None,
        *,
        policy: Union[str, int] = "all",
        eval_name: str = "validation",
        target_step: Optional[int] = None,
        idle_timeout: Optional[float] = None,
        poll_interval: float = 1.0,
        best_metric: Optional[str] = None,
        best_mode: str = "higher",
        eval_identity: Optional[Mapping[str, Any]] = None,
    ) -> Optional[runner.Output]:
        """Evaluates the checkpoints that appear in the manager's directory until training is over.

        Orbit's `steps`, `timeout` and `timeout_fn`, then the options of
        `continuous_eval.ContinuousEvaluator`, which runs the loop: each
        checkpoint under `policy` (Orbit: only the latest) evaluated once and
        recorded, until training's completion marker or `target_step` is
        evaluated, or `timeout` passes and `timeout_fn` agrees. What the run
        did is in `last_continuous_eval`.

        Returns:
            The output of the last evaluation run here, or None when none ran.

        Raises:
            ValueError: For a missing evaluator or manager, or a bad argument.
            TimeoutError: If `idle_timeout` passed with no new checkpoint.
        """
        evaluator = continuous_eval.ContinuousEvaluator(
            self, policy=policy, eval_name=eval_name, target_step=target_step, idle_timeout=idle_timeout,
            poll_interval=poll_interval, best_metric=best_metric, best_mode=best_mode, eval_identity=eval_identity,
        )
        try:
            self.last_continuous_eval = evaluator.run(steps, timeout=timeout, timeout_fn=timeout_fn)
        except continuous_eval.IdleTimeoutError as error:
            self.last_continuous_eval = error.stats
            raise
        return self.last_continuous_eval.output

    def restore_checkpoint(self, checkpoint_path: Optional[str] = None) -> Optional[str]:
        """Restores a checkpoint, checking that it holds every variable of the program.

        Values the program does not use (an evaluator's missing optimizer
        slots) are ignored; variables the checkpoint lacks are an error.

        Args:
            checkpoint_path: The checkpoint prefix to restore. None restores the
                manager's latest checkpoint, or runs its `init_fn` when there is none.

        Returns:
            The restored path, or None when nothing was restored.

        Raises:
            ValueError: If there is no checkpoint manager, or the checkpoint does
                not hold all of the program's variables.
        """
        self._require("checkpoint_manager", for_method="restore_checkpoint")
        with self.strategy.scope():
            if checkpoint_path is None:
                checkpoint_path = self._latest_complete_checkpoint()
            if checkpoint_path is None:
                has_init_fn = tf_internals.checkpoint_init_fn(self.checkpoint_manager) is not None
                _log("no checkpoint to restore: initializing model" + (" with `init_fn`..." if has_init_fn else "..."))
                checkpoint_path = self.checkpoint_manager.restore_or_initialize()
                self._weights_ready = self._weights_ready or has_init_fn or checkpoint_path is not None
                return checkpoint_path
            _log(f"restoring model from {checkpoint_path}...")
            restore.restore_checked(self.checkpoint_manager.checkpoint, checkpoint_path)
        self._weights_ready = True
        restored_step = run_dir.checkpoint_step(checkpoint_path)
        if restored_step is not None and restored_step == int(self.global_step.numpy()):
            self._last_saved_step = restored_step
        _log(f"restored model from {checkpoint_path}.")
        return checkpoint_path

    def _latest_complete_checkpoint(self) -> Optional[str]:
        """The manager's latest checkpoint; when its `.index` is empty or gone (a full disk), the newest complete one.

        The incomplete checkpoint is left as it is, and a warning names it.
        """
        latest = self.checkpoint_manager.latest_checkpoint
        if latest is None:
            return None
        try:
            if tf.io.gfile.stat(f"{latest}.index").length > 0:
                return latest
        except tf.errors.NotFoundError:
            pass
        available = checkpoint_watcher.list_checkpoints(
            self.checkpoint_manager.directory, checkpoint_watcher.checkpoint_name(self.checkpoint_manager))
        fallback = available[max(available)] if available else None
        message = (f"the latest checkpoint {latest} is incomplete (its .index is empty or missing) and is left as "
                   f"it is; restoring {fallback or 'nothing'} instead")
        logging.warning(message)
        _log(f"WARNING: {message}.")
        return fallback

    def save_checkpoint(self) -> None:
        """Saves a checkpoint at the current step, whatever the interval (ValueError without a manager)."""
        self._require("checkpoint_manager", for_method="save_checkpoint")
        self._maybe_save_checkpoint(check_interval=False)

    @property
    def steps_per_loop(self) -> int:
        """The number of steps the next `trainer.train` call will run."""
        return self._loop_steps(int(self.global_step.numpy()))

    # Orbit's protected methods: subclasses call and override them with these signatures.

    def _train_n_steps(self, num_steps: int) -> None:
        """Runs one `trainer.train(num_steps)`, then the train actions, logging and summaries.

        Raises:
            RuntimeError: If `trainer.train` did not advance `global_step`.
        """
        start_step = int(self.global_step.numpy())
        first_loop = self.step_timer is None
        if first_loop:
            self.step_timer = StepTimer(self.global_step)
        should_record = False  # Static "off" lets traces drop summary ops entirely.
        if self.summary_interval:
            should_record = lambda: self.global_step % self.summary_interval == 0  # noqa: E731
        with self.summary_manager.summary_writer().as_default(), tf.summary.record_if(should_record):
            self.step_timer.start(step=start_step)
            output = self.trainer.train(tf.convert_to_tensor(num_steps, dtype=tf.int32))
            current_step = int(self.global_step.numpy())
            loop_seconds = self.step_timer.elapsed()
            steps_per_second = self.step_timer.steps_per_second(restart=False, step=current_step)

        if current_step == start_step:
            raise RuntimeError(
                f"`{type(self.trainer).__name__}.train({num_steps})` did not advance `global_step` "
                f"(still {start_step}); the trainer must increment the global step it shares with the "
                "controller (e.g. `global_step=optimizer.iterations`), or `train()` would never end."
            )
        if current_step != start_step + num_steps:
            logging.warning(
                "`%s.train(%d)` advanced `global_step` from %d to %d, not to %d.",
                type(self.trainer).__name__, num_steps, start_step, current_step, start_step + num_steps,
            )
        self._weights_ready = True

        output = output or {}
        for action in self.train_actions:
            action(output)
        if self.train_actions:  # One may have rolled training back.
            current_step = int(self.global_step.numpy())
        output = tf.nest.map_structure(utils.get_value, output)

        if not first_loop:  # The first loop traces and compiles: its rate says nothing about throughput.
            output["steps_per_second"] = steps_per_second
        _log(progress.train_line(current_step, self._train_target, output, first_loop_seconds=(
            loop_seconds if first_loop else None)))
        self.summary_manager.write_summaries(output)
        self.summary_manager.flush()
        self._last_train_output = output

    def _maybe_save_checkpoint(self, check_interval: bool = True) -> bool:
        """Saves a checkpoint (never twice at one step) and returns whether it did.

        Args:
            check_interval: Save only when a multiple of the manager's
                `checkpoint_interval` was crossed since the last save.
        """
        if self.checkpoint_manager is None:
            return False
        step = int(self.global_step.numpy())
        if step == self._last_saved_step:
            return False
        if check_interval:
            interval = self.checkpoint_manager.checkpoint_interval
            anchor = self._last_saved_step if self._last_saved_step is not None else self._interval_anchor
            if not interval or step // interval <= anchor // interval:
                return False
        path = self.checkpoint_manager.save(step, check_interval=False, options=self._checkpoint_options)
        if path is None:
            return False
        self._last_saved_step = step
        _log(f"saved checkpoint to {path}{' (async)' if self._enable_async_checkpoint_saving else ''}.")
        return True

    def _require(self, attribute: str, for_method: str) -> None:
        """Raises ValueError if `attribute` was not given to `__init__`."""
        if getattr(self, attribute, None) is None:
            raise ValueError(
                f"`{attribute}` is not set. Pass `{attribute}` to `Controller.__init__` "
                f"before calling `{for_method}()`."
            )

    def _sync_on_async_checkpointing(self) -> None:
        """Waits for async checkpoint saves (if any) to finish."""
        if self.checkpoint_manager is not None:
            self.checkpoint_manager.sync()

    # tfpipe's helpers.

    def _loop_steps(self, current_step: int) -> int:
        """`steps_per_loop` at `current_step`, checked when it is a callable."""
        if not callable(self._steps_per_loop):
            return self._steps_per_loop
        steps = self._steps_per_loop(current_step)
        if not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(
                f"`steps_per_loop` returned {steps!r} at step {current_step}; it must return a positive integer."
            )
        return int(steps)

    def _maybe_stop_for_termination(self, step: int) -> None:
        def save() -> None:
            if self.checkpoint_manager is not None:
                self._maybe_save_checkpoint(check_interval=False)
                self._sync_on_async_checkpointing()

        preemption.stop_if_requested(self._termination_watcher, step, save)

    def _maybe_write_training_complete(self, target_step: int) -> None:
        """Writes the completion marker once `target_step` is reached and its checkpoint saved."""
        if self.checkpoint_manager is None:
            return
        step = int(self.global_step.numpy())
        if step < target_step or self._last_saved_step != step:
            return
        run_dir.write_training_complete(
            self.checkpoint_manager.directory, step=step, target_step=target_step,
            checkpoint=self.checkpoint_manager.latest_checkpoint, train_output=self._last_train_output,
        )

    def _check_weights_ready(self) -> None:
        if self.checkpoint_manager is None or self._weights_ready or self._allow_evaluate_initial_weights:
            return
        raise ValueError(
            f"`evaluate()` found no checkpoint to restore in `checkpoint_manager.directory` "
            f"({self.checkpoint_manager.directory}), the manager has no `init_fn`, and nothing was trained: the "
            "model holds its initial weights. Train or restore a checkpoint first, or pass "
            "`allow_evaluate_initial_weights=True` to `Controller.__init__` to evaluate them on purpose."
        )
