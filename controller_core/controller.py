"""The outer training and evaluation loop: `Controller`, and `StepTimer`.

`Controller` is a drop-in for `orbit.Controller` (same constructor, methods and
defaults) with Orbit's silent failure modes turned into defined behaviour:

* a forced save (`save_checkpoint()`, the end of `train()`) always saves, even
  when the `CheckpointManager` has no `checkpoint_interval`; interval saves fire
  when a multiple of the interval was crossed since the last save, not only
  when a loop ends exactly on one;
* a trainer whose `train(n)` leaves `global_step` where it was is an error, not
  an endless loop;
* `evaluate()` refuses to evaluate freshly initialised weights when a
  checkpoint manager is given but nothing was restored or trained (unless
  `allow_evaluate_initial_weights=True`);
* restores check what they restored: values in the checkpoint that the program
  does not use (an evaluator's missing optimizer slots) are ignored quietly,
  but variables of the program that the checkpoint does not hold are an error
  naming them;
* steps/sec counts only time spent inside `trainer.train`, never checkpoint
  saves, evaluations or actions; the first loop of a process, which includes
  tracing, is reported apart;
* an injected `eval_summary_manager` is always used;
* `train()` writes a completion marker next to the checkpoints once it reaches
  its target step, so an evaluator knows when training is over;
* `evaluate_continuously()` evaluates every checkpoint (or the latest, or a
  stride), keeps a durable record per evaluated checkpoint so a restarted
  evaluator never repeats one, skips checkpoints deleted under it, pins the
  best checkpoint, and stops when training is complete (or fails when the
  trainer went quiet for `idle_timeout`).

The loop itself::

    while global_step < steps:
        output = trainer.train(min(steps - global_step, steps_per_loop))
        for action in train_actions: action(output)
        log and summarise output
        save a checkpoint if an interval boundary was crossed
    save a final checkpoint; wait for async saves; write the completion marker
"""

import datetime
import time
from typing import Callable, Iterable, Optional, Union

from absl import logging
import numpy as np
import tensorflow as tf

from tfpipe import checks
from tfpipe.controller_core import checkpoint_watcher
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import preemption
from tfpipe.controller_core import restore
from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner
from tfpipe.controller_core import utils

Action = Callable[[runner.Output], None]
StepsPerLoop = Union[int, Callable[[int], int]]


def _log(message: str) -> None:
    """Prints to stdout (what KFP and Vertex show as the step's log); also to absl at debug level.

    Orbit logs every line twice (absl INFO and print), which doubles each line
    under `absl.app`, where absl INFO goes to stderr.
    """
    logging.debug(message)
    print(message, flush=True)


def _format_output(output: runner.Output, indent: int = 4) -> str:
    """Formats an output dictionary for one log line (or several, when nested)."""
    if not output:
        return "{}"
    lines = []
    for key, value in sorted(output.items()):
        if isinstance(value, dict):
            nested = _format_output(value, indent + 4).replace("\n", "\n" + " " * indent)
            lines.append(f"{key!r}: {nested}")
        elif isinstance(value, (float, np.floating)):
            lines.append(f"{key!r}: {float(value):.6g}")
        elif np.ndim(value) > 0:
            lines.append(f"{key!r}: <{np.asarray(value).dtype} array, shape {np.shape(value)}>")
        else:
            lines.append(f"{key!r}: {value!r}")
    one_line = "{" + ", ".join(lines) + "}"
    if len(one_line) <= 160 and "\n" not in one_line:
        return one_line
    pad = " " * indent
    return "{\n" + ",\n".join(pad + line for line in lines) + "\n" + " " * (indent - 4) + "}"


class Controller:
    """Runs training, evaluation, checkpointing and summaries around runners.

    The inner loops belong to `trainer` (an `AbstractTrainer`) and `evaluator`
    (an `AbstractEvaluator`); the controller decides how many steps each call
    runs, saves checkpoints through a `tf.train.CheckpointManager` (checkpoint
    number = global step), writes outputs to TensorBoard and calls actions
    (`Callable[[Output], None]`) after each train loop and each evaluation.
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
            global_step: The integer `tf.Variable` counting training steps, e.g.
                `optimizer.iterations` or `utils.create_global_step()`.
            trainer: Runs the inner training loop.
            evaluator: Runs the inner evaluation loop.
            strategy: The `tf.distribute.Strategy`; default: the one in scope.
            train_actions: Called with the raw output of every `trainer.train`.
            eval_actions: Called with the raw output of every `evaluator.evaluate`.
            steps_per_loop: Steps per `trainer.train` call: a positive int, or a
                callable mapping the current global step to one. Required with
                a trainer.
            checkpoint_manager: Saves and restores checkpoints; when given, the
                latest checkpoint in its directory is restored here (or its
                `init_fn` runs when there is none).
            enable_async_checkpointing: Save checkpoints in the background;
                `train()` waits for them before it returns.
            summary_interval: Step interval for `tf.summary` calls made inside
                `trainer.train`; must be a multiple of an int `steps_per_loop`.
                The controller's own summaries (outputs, steps/sec) are always
                written when there is a summary directory.
            summary_dir: Directory for training summaries; `None` writes none.
            eval_summary_dir: Directory for evaluation summaries; defaults to
                `summary_dir`.
            summary_manager: Replaces the training summary manager built from
                `summary_dir`.
            eval_summary_manager: Replaces the evaluation summary manager built
                from `eval_summary_dir` (always, even when both directories are
                the same).
            allow_evaluate_initial_weights: Let `evaluate()` run when a checkpoint
                manager is given but no checkpoint was restored and nothing was
                trained, i.e. evaluate the initial weights on purpose.
            termination_watcher: When it has seen SIGTERM, training saves a
                checkpoint at the next loop boundary and raises
                `preemption.Preempted` (exit status 143) for a retry to resume.

        Raises:
            ValueError: If both `trainer` and `evaluator` are None; if a trainer
                is given without a valid `steps_per_loop`; if `summary_interval`
                is not positive or not a multiple of `steps_per_loop`; if
                `global_step` is not a `tf.Variable`; if the latest checkpoint
                does not hold the program's variables.
        """
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
        if not isinstance(global_step, tf.Variable):
            raise ValueError(f"`global_step` must be a `tf.Variable`, got {type(global_step).__name__}: {global_step!r}.")

        self.trainer = trainer
        self.evaluator = evaluator
        self.strategy = strategy or tf.distribute.get_strategy()
        self.train_actions = tuple(train_actions or ())
        self.eval_actions = tuple(eval_actions or ())
        self.global_step = global_step
        self.checkpoint_manager = checkpoint_manager
        self._enable_async_checkpointing = enable_async_checkpointing
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

        # Weights are "ready" to evaluate once restored from a checkpoint or trained here.
        self._weights_ready = False
        self._last_saved_step: Optional[int] = None
        self._last_train_output: runner.Output = {}
        self.last_continuous_eval: Optional[checkpoint_watcher.ContinuousEvalStats] = None
        if checkpoint_manager is not None:
            self.restore_checkpoint()
        self._interval_anchor = int(global_step.numpy())

    # ------------------------------------------------------------------ loops

    def train(self, steps: int, checkpoint_at_completion: bool = True) -> None:
        """Trains until `global_step` reaches `steps` (an absolute step, not a count).

        Saves checkpoints whenever a multiple of the manager's
        `checkpoint_interval` is crossed and, with `checkpoint_at_completion`, at
        the end (even when already at `steps`), then waits for async saves and
        writes the completion marker next to the checkpoints.

        Args:
            steps: The global step to train up to.
            checkpoint_at_completion: Whether to save a checkpoint at the end,
                whatever the interval.

        Raises:
            ValueError: If there is no trainer.
            RuntimeError: If `trainer.train(n)` does not advance `global_step`.
        """
        self._require("trainer", for_method="train")
        self._maybe_clear_training_complete(steps)
        self._train_to(steps)
        if checkpoint_at_completion:
            self._maybe_save_checkpoint(check_interval=False)
            self._finish_training(steps)

    def evaluate(self, steps: int = -1) -> Optional[runner.Output]:
        """Runs one evaluation of `steps` steps (`-1`: the whole evaluation dataset).

        Args:
            steps: Positive number of steps, or -1.

        Returns:
            The evaluation output as a dictionary of NumPy values; with `steps > 0`
            it also holds `steps_per_second`.

        Raises:
            ValueError: If there is no evaluator, if `steps` is neither positive
                nor -1, or if a checkpoint manager is given but the model holds
                initial weights (nothing restored or trained) and
                `allow_evaluate_initial_weights` is False.
        """
        self._require("evaluator", for_method="evaluate")
        return self._evaluate(steps)

    def _evaluate(self, steps: int, on_output: Optional[Callable[[runner.Output], None]] = None) -> runner.Output:
        """Runs one evaluation; `on_output` sees the raw output before the eval actions do."""
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
        if on_output is not None:
            on_output(output)
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
        """Alternates training and evaluation until `global_step` reaches `train_steps`.

        Args:
            train_steps: The global step to train up to.
            eval_steps: Steps per evaluation; -1 for the whole evaluation dataset.
            eval_interval: Training steps between evaluations; a train loop is cut
                short to honour it. `None`: evaluate only at the end.

        Returns:
            The output of the last evaluation (None when no training was needed).

        Raises:
            ValueError: If the trainer or evaluator is missing, or `eval_interval`
                is not a positive integer.
        """
        self._require("trainer", for_method="train_and_evaluate")
        self._require("evaluator", for_method="train_and_evaluate")
        if eval_interval is not None and (not isinstance(eval_interval, (int, np.integer)) or eval_interval < 1):
            raise ValueError(f"`eval_interval` ({eval_interval!r}) must be a positive integer or None.")
        self._maybe_clear_training_complete(train_steps)

        output = None
        current_step = int(self.global_step.numpy())
        interval = eval_interval or (train_steps - current_step)
        while current_step < train_steps:
            self._train_to(min(train_steps, current_step + interval))
            output = self.evaluate(steps=eval_steps)
            current_step = int(self.global_step.numpy())
        self._maybe_save_checkpoint(check_interval=False)
        self._finish_training(train_steps)
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
    ) -> Optional[runner.Output]:
        """Evaluates the checkpoints that appear in the manager's directory until training is over.

        Each evaluated checkpoint gets a durable record in
        `<directory>/eval/<eval_name>/records/`; a restarted evaluator skips every
        recorded step, so no checkpoint is evaluated twice across restarts and a
        late evaluator catches up. A checkpoint deleted before it could be
        restored (the trainer's `max_to_keep`) is skipped with a warning and
        counted in `last_continuous_eval.skipped`.

        The loop stops when training's completion marker names a step that is
        evaluated (a marker short of `target_step` does not count: more training
        is expected); when `target_step` is evaluated; or, as in Orbit, when no new
        checkpoint came for `timeout` seconds and `timeout_fn` (if given) returns
        True. No new checkpoint for `idle_timeout` seconds is an error: a trainer
        that died is a failure, not the end of training.

        Args:
            steps: Steps per evaluation; -1 for the whole evaluation dataset.
            timeout: Orbit's timeout: seconds without a new checkpoint before
                calling `timeout_fn` (or stopping, without one). None: no timeout.
            timeout_fn: Called after `timeout`; True stops the loop.
            policy: `all` (every checkpoint in step order, oldest unevaluated
                first), `latest` (only the newest, Orbit's behaviour), or a step
                stride N (a checkpoint each time a multiple of N is crossed).
                Training's final checkpoint is evaluated under every policy.
            eval_name: Names this evaluator's records (`eval/<eval_name>/`).
            target_step: Stop once a checkpoint at or past this step is evaluated.
            idle_timeout: Seconds without a new checkpoint (counted from the
                last new checkpoint or the end of the last evaluation) after
                which the loop fails. None waits forever.
            poll_interval: Seconds between directory listings.
            best_metric: Track the best checkpoint by this output metric (nested
                keys as `a/b`) and pin a copy in `eval/<eval_name>/best/`.
            best_mode: `higher` or `lower`: which metric values are better.

        Returns:
            The output of the last evaluation run here, or None when none ran.

        Raises:
            ValueError: If the evaluator or checkpoint manager is missing, or an
                argument is invalid.
            TimeoutError: If `idle_timeout` passed with no new checkpoint.
        """
        self._require("evaluator", for_method="evaluate_continuously")
        self._require("checkpoint_manager", for_method="evaluate_continuously")
        policy = checks.check_policy("policy", policy)
        checks.check_seconds("timeout", timeout)
        checks.check_seconds("idle_timeout", idle_timeout)
        checks.check_seconds("poll_interval", poll_interval, optional=False)
        if target_step is not None:
            checks.check_positive_int("target_step", target_step)
        checks.check_eval_name("eval_name", eval_name)

        directory = self.checkpoint_manager.directory
        evaluator_dir = eval_records.eval_dir(directory, eval_name)
        records = eval_records.EvalRecords(evaluator_dir)
        best = eval_records.BestCheckpoint(evaluator_dir, best_metric, best_mode) if best_metric else None
        name = checkpoint_watcher.checkpoint_name(self.checkpoint_manager)
        marker_path = f"{directory}/{run_dir.TRAINING_COMPLETE}"

        stats = checkpoint_watcher.ContinuousEvalStats()
        self.last_continuous_eval = stats
        recorded = set(records.steps())
        stats.already_recorded = sorted(recorded)
        pending_seen: set = set()
        output = None
        last_activity = time.monotonic()
        _log(
            f" eval | watching {directory} | policy: {policy} | records: {records.records_dir} "
            f"({len(recorded)} already evaluated)"
        )
        while True:
            available = checkpoint_watcher.list_checkpoints(directory, name)
            newest = max(available, default=None)
            if newest is not None and (stats.last_step_seen is None or newest > stats.last_step_seen):
                stats.last_step_seen = newest
                last_activity = time.monotonic()
            for step in sorted(pending_seen - set(available) - recorded):
                self._skip_deleted(stats, step, f"{directory}/{name}-{step}")
                pending_seen.discard(step)
            marker = run_dir.read_json(marker_path)
            final_step = int(marker["step"]) if marker else None
            pending = checkpoint_watcher.select_pending(available, recorded, policy, final_step)
            pending_seen.update(pending)

            if pending:
                step = pending[0]
                pending_seen.discard(step)
                evaluated = self._evaluate_checkpoint(step, available[step], steps, records, best, stats)
                if evaluated is not None:
                    output = evaluated
                    recorded.add(step)
                last_activity = time.monotonic()
                if target_step is not None and step >= target_step:
                    stats.stop_reason = f"target step {target_step} evaluated (step {step})"
                    break
                continue

            marker_counts = final_step is not None and (target_step is None or final_step >= target_step)
            if marker_counts and (final_step in recorded or final_step not in available):
                if final_step not in recorded:
                    logging.warning("Training finished at step %d but its checkpoint is gone.", final_step)
                stats.stop_reason = f"training complete at step {final_step}"
                break
            if target_step is not None and recorded and max(recorded) >= target_step:
                stats.stop_reason = f"target step {target_step} already evaluated"
                break
            idle = time.monotonic() - last_activity
            if idle_timeout is not None and idle > idle_timeout:
                stats.stop_reason = "idle timeout"
                seen = stats.last_step_seen
                finished = (
                    f"training_complete.json says training finished at step {final_step}, short of "
                    f"`target_step` {target_step}" if final_step is not None
                    else "the trainer seems to have stopped before finishing (no training_complete.json)"
                )
                raise TimeoutError(
                    f"No new checkpoint in {directory} for {idle:.0f} s (`idle_timeout`={idle_timeout}); "
                    f"last step seen: {seen if seen is not None else 'none'}; {finished}."
                )
            if timeout is not None and idle > timeout:
                if timeout_fn is None or timeout_fn():
                    stats.stop_reason = f"no new checkpoint for {timeout} s"
                    break
                last_activity = time.monotonic()
            time.sleep(poll_interval)

        stats.best = best.record if best is not None else None
        _log(
            f" eval | done | {stats.stop_reason} | evaluated: {len(stats.evaluated)} | skipped (deleted): "
            f"{len(stats.skipped)} | already recorded: {len(stats.already_recorded)}"
            + (f" | best step: {stats.best['step']}" if stats.best else "")
        )
        return output

    def _evaluate_checkpoint(
        self,
        step: int,
        checkpoint_path: str,
        steps: int,
        records: "eval_records.EvalRecords",
        best: Optional["eval_records.BestCheckpoint"],
        stats: checkpoint_watcher.ContinuousEvalStats,
    ) -> Optional[runner.Output]:
        """Restores and evaluates one checkpoint, then records it (and maybe pins it as best).

        Returns:
            The evaluation output, or None when the checkpoint vanished first.
        """
        try:
            self.restore_checkpoint(checkpoint_path)
        except (tf.errors.NotFoundError, tf.errors.DataLossError):
            if tf.io.gfile.exists(f"{checkpoint_path}.index"):
                raise
            self._skip_deleted(stats, step, checkpoint_path)
            return None
        start = time.monotonic()

        def commit(raw_output: runner.Output) -> None:
            record = records.write(step, checkpoint_path, raw_output, duration=time.monotonic() - start)
            stats.evaluated.append(step)
            if best is not None:
                try:
                    best.consider(record)
                except tf.errors.NotFoundError:
                    logging.warning("Checkpoint %s vanished before it could be pinned as best.", checkpoint_path)

        return self._evaluate(steps, on_output=commit)

    def _skip_deleted(self, stats: checkpoint_watcher.ContinuousEvalStats, step: int, path: str) -> None:
        stats.skipped.append(step)
        logging.warning("Checkpoint %s was deleted before it could be evaluated; skipped.", path)
        _log(f" eval | step: {step: 6d} | skipped: checkpoint deleted before evaluation ({path})")

    # ------------------------------------------------------------ checkpoints

    def restore_checkpoint(self, checkpoint_path: Optional[str] = None) -> Optional[str]:
        """Restores a checkpoint, checking that it holds every variable of the program.

        Values in the checkpoint that the program does not create (an
        evaluator restoring a trainer's checkpoint has no optimizer slots) are
        ignored; variables the program has but the checkpoint lacks are an error.

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
                checkpoint_path = self.checkpoint_manager.latest_checkpoint
                if checkpoint_path is None:
                    _log("no checkpoint to restore: initializing model...")
                    self.checkpoint_manager.restore_or_initialize()
                    return None
            _log(f"restoring model from {checkpoint_path}...")
            restore.restore_checked(self.checkpoint_manager.checkpoint, checkpoint_path)
        self._weights_ready = True
        restored_step = run_dir.checkpoint_step(checkpoint_path)
        if restored_step is not None and restored_step == int(self.global_step.numpy()):
            self._last_saved_step = restored_step
        _log(f"restored model from {checkpoint_path}.")
        return checkpoint_path

    def save_checkpoint(self) -> None:
        """Saves a checkpoint at the current step, whatever the checkpoint interval.

        Raises:
            ValueError: If there is no checkpoint manager.
        """
        self._require("checkpoint_manager", for_method="save_checkpoint")
        self._maybe_save_checkpoint(check_interval=False)

    @property
    def steps_per_loop(self) -> int:
        """The number of steps the next `trainer.train` call will run."""
        if callable(self._steps_per_loop):
            return self._steps_per_loop(int(self.global_step.numpy()))
        return self._steps_per_loop

    # -------------------------------------------------------------- internals

    def _train_to(self, steps: int) -> None:
        current_step = int(self.global_step.numpy())
        _log(f"train | step: {current_step: 6d} | training until step {steps}...")
        while current_step < steps:
            self._maybe_stop_for_termination()
            steps_per_loop = (
                self._steps_per_loop(current_step) if callable(self._steps_per_loop) else self._steps_per_loop
            )
            if not isinstance(steps_per_loop, (int, np.integer)) or steps_per_loop < 1:
                raise ValueError(
                    f"`steps_per_loop` returned {steps_per_loop!r} at step {current_step}; "
                    "it must return a positive integer."
                )
            current_step = self._train_n_steps(
                min(steps - current_step, int(steps_per_loop)), target_step=steps, start_step=current_step
            )
            self._maybe_save_checkpoint(step=current_step)
        self._maybe_stop_for_termination()

    def _maybe_stop_for_termination(self) -> None:
        """After a termination signal: saves a checkpoint at this step and raises `Preempted`."""
        watcher = self._termination_watcher
        if watcher is None or not watcher.requested:
            return
        step = int(self.global_step.numpy())
        if self.checkpoint_manager is not None:
            self._maybe_save_checkpoint(check_interval=False)
            self.checkpoint_manager.sync()
        stop = preemption.Preempted(step, watcher.signum)
        _log(f"train | step: {step: 6d} | {stop}; exiting with status {stop.code} for a retry to resume")
        raise stop

    def _train_n_steps(self, num_steps: int, target_step: int, start_step: int) -> int:
        """Runs one `trainer.train(num_steps)`, then actions, logging and summaries.

        Reads the global step once after the loop (a read waits for the device),
        and again only when train actions ran (one may roll training back).

        Returns:
            The global step after the loop (and its actions).
        """
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
        if self.train_actions:
            current_step = int(self.global_step.numpy())
        output = tf.nest.map_structure(utils.get_value, output)

        if first_loop:
            # The first call traces and compiles; its rate says nothing about throughput.
            rate_msg = f"first loop: {loop_seconds:.2f} s incl. tracing"
            eta_msg = ""
        else:
            output["steps_per_second"] = steps_per_second
            rate_msg = f"steps/sec: {steps_per_second: 6.1f}"
            eta = (target_step - current_step) / steps_per_second if steps_per_second > 0 else float("inf")
            eta_msg = f" | eta: {datetime.timedelta(seconds=round(eta)) if np.isfinite(eta) else '?'}"
        _log(
            f"train | step: {current_step: 6d} | target: {target_step: 6d} | {rate_msg}{eta_msg} | "
            f"output: {_format_output(output)}"
        )
        self.summary_manager.write_summaries(output)
        self.summary_manager.flush()
        self._last_train_output = output
        return current_step

    def _maybe_save_checkpoint(self, check_interval: bool = True, step: Optional[int] = None) -> bool:
        """Saves a checkpoint when forced, or when an interval boundary was crossed.

        Never saves twice at one step, so an existing `ckpt-N` is never rewritten.

        Args:
            check_interval: Save only when an interval boundary was crossed.
            step: The current global step, when the caller just read it.

        Returns:
            Whether a checkpoint was saved.
        """
        if self.checkpoint_manager is None:
            return False
        step = int(self.global_step.numpy()) if step is None else step
        if step == self._last_saved_step:
            return False
        if check_interval:
            interval = self.checkpoint_manager.checkpoint_interval
            anchor = self._last_saved_step if self._last_saved_step is not None else self._interval_anchor
            if not interval or step // interval <= anchor // interval:
                return False
        options = tf.train.CheckpointOptions(enable_async=self._enable_async_checkpointing)
        path = self.checkpoint_manager.save(checkpoint_number=step, check_interval=False, options=options)
        if path is None:
            return False
        self._last_saved_step = step
        _log(f"saved checkpoint to {path}{' (async)' if self._enable_async_checkpointing else ''}.")
        return True

    def _finish_training(self, target_step: int) -> None:
        """Waits for async saves, then writes the completion marker when the target is reached.

        The marker holds the final step and checkpoint and the last train loop's
        scalar outputs; a marker already at this step is left as it is.
        """
        if self.checkpoint_manager is None:
            return
        self.checkpoint_manager.sync()
        step = int(self.global_step.numpy())
        if step < target_step or self._last_saved_step != step:
            return
        path = f"{self.checkpoint_manager.directory}/{run_dir.TRAINING_COMPLETE}"
        previous = run_dir.read_json(path)
        if previous is not None and previous.get("step") == step:
            return
        run_dir.write_json_atomic(
            path,
            {
                "step": step,
                "target_step": int(target_step),
                "checkpoint": self.checkpoint_manager.latest_checkpoint,
                "train_output": run_dir.flatten_scalars(self._last_train_output),
                "time": time.time(),
            },
        )

    def _maybe_clear_training_complete(self, target_step: int) -> None:
        """Removes a completion marker that training towards `target_step` makes stale."""
        if self.checkpoint_manager is None:
            return
        path = f"{self.checkpoint_manager.directory}/{run_dir.TRAINING_COMPLETE}"
        marker = run_dir.read_json(path)
        if marker is not None and int(marker.get("step", -1)) < target_step:
            tf.io.gfile.remove(path)

    def _check_weights_ready(self) -> None:
        if self.checkpoint_manager is None or self._weights_ready or self._allow_evaluate_initial_weights:
            return
        raise ValueError(
            f"`evaluate()` found no checkpoint to restore in `checkpoint_manager.directory` "
            f"({self.checkpoint_manager.directory}) and nothing was trained: the model holds its "
            "initial weights. Train or restore a checkpoint first, or pass "
            "`allow_evaluate_initial_weights=True` to `Controller.__init__` to evaluate them on purpose."
        )

    def _require(self, attribute: str, for_method: str) -> None:
        if getattr(self, attribute, None) is None:
            raise ValueError(
                f"`{attribute}` is not set. Pass `{attribute}` to `Controller.__init__` "
                f"before calling `{for_method}()`."
            )


class StepTimer:
    """Measures steps per second over a window that `start()` opens."""

    def __init__(self, step: tf.Variable) -> None:
        """Initializes the timer and opens a window.

        Args:
            step: The step variable to read.
        """
        self.step = step
        self.start()

    def start(self, step: Optional[int] = None) -> None:
        """Opens a new window now, at `step` (default: the step variable's value)."""
        self.last_iteration = int(self.step.numpy()) if step is None else step
        self.last_time = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the window opened."""
        return time.perf_counter() - self.last_time

    def steps_per_second(self, restart: bool = True, step: Optional[int] = None) -> float:
        """Steps per second since the window opened (to `step`, default: the variable's value).

        Reopens the window when `restart`.
        """
        elapsed = self.elapsed()
        step = int(self.step.numpy()) if step is None else step
        value = (step - self.last_iteration) / elapsed if elapsed > 0 else 0.0
        if restart:
            self.start(step)
        return value
