"""Controller: Orbit's behaviour, and each Orbit defect fixed (tests that would fail on Orbit)."""

import os

import numpy as np
import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.controller_core import run_dir
from tests.support.tiny_runners import (
    SleepyTrainer,
    StuckTrainer,
    TinyModel,
    TinyRunner,
    checkpoint_steps,
    read_scalars,
    tiny_dataset,
)


def make_controller(tmp_path, runner=None, *, interval=None, max_to_keep=None, **kwargs):
    runner = runner or TinyRunner()
    manager = tf.train.CheckpointManager(
        runner.checkpoint(),
        directory=str(tmp_path / "ckpt"),
        max_to_keep=max_to_keep,
        step_counter=runner.global_step,
        checkpoint_interval=interval,
    )
    kwargs.setdefault("steps_per_loop", 2)
    controller = orbit.Controller(
        global_step=runner.global_step,
        trainer=runner,
        evaluator=runner,
        checkpoint_manager=manager,
        **kwargs,
    )
    return controller, runner, manager


# ---------------------------------------------------------------- train loop


@pytest.mark.parametrize("enable_async", [False, True], ids=["sync", "async"])
def test_train_saves_at_interval_and_writes_summaries(tmp_path, enable_async):
    controller, runner, _ = make_controller(
        tmp_path, interval=4, max_to_keep=None, summary_dir=str(tmp_path / "train"),
        enable_async_checkpointing=enable_async,
    )
    controller.train(steps=10)
    assert int(runner.global_step.numpy()) == 10
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [4, 8, 10]
    scalars = read_scalars(str(tmp_path / "train"))
    assert [step for step, _ in scalars["loss"]] == [2, 4, 6, 8, 10]
    # The loss goes down on this trivially learnable problem.
    assert scalars["loss"][-1][1] < scalars["loss"][0][1]
    # A new controller (a restarted job) restores the final step.
    restarted, runner2, _ = make_controller(tmp_path, interval=4)
    assert int(runner2.global_step.numpy()) == 10
    np.testing.assert_allclose(runner2.model.dense.kernel.numpy(), runner.model.dense.kernel.numpy())


def test_forced_save_without_checkpoint_interval(tmp_path):
    # Orbit: a manager without `checkpoint_interval` never saves, even at the end of train().
    controller, _, _ = make_controller(tmp_path, interval=None)
    controller.train(steps=6)
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [6]


def test_save_checkpoint_without_interval(tmp_path):
    controller, runner, _ = make_controller(tmp_path, interval=None)
    controller.train(steps=2, checkpoint_at_completion=False)
    assert checkpoint_steps(str(tmp_path / "ckpt")) == []
    controller.save_checkpoint()
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [2]


def test_interval_saves_fire_when_a_boundary_is_crossed(tmp_path):
    # Orbit/TF save at 3 (first loop), then only once `last + interval` is reached: 3, 15, 27.
    controller, _, _ = make_controller(tmp_path, interval=10, steps_per_loop=3)
    controller.train(steps=31)
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [12, 21, 30, 31]


def test_never_saves_twice_at_one_step(tmp_path):
    controller, _, manager = make_controller(tmp_path, interval=None)
    controller.train(steps=4)
    before = tf.io.gfile.stat(f"{manager.directory}/ckpt-4.index").mtime_nsec
    controller.save_checkpoint()
    controller.train(steps=4)  # Already there: the forced save must not rewrite ckpt-4.
    assert tf.io.gfile.stat(f"{manager.directory}/ckpt-4.index").mtime_nsec == before
    assert checkpoint_steps(manager.directory) == [4]


def test_already_trained_model_saves_once_and_trains_nothing(tmp_path):
    controller, runner, _ = make_controller(tmp_path, interval=None)
    controller.train(steps=4, checkpoint_at_completion=False)
    controller.train(steps=4)
    assert int(runner.global_step.numpy()) == 4
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [4]


def test_steps_per_loop_callable(tmp_path):
    seen = []
    controller, runner, _ = make_controller(
        tmp_path, steps_per_loop=lambda step: 1 if step < 3 else 4, summary_dir=str(tmp_path / "train"),
        train_actions=[lambda output: seen.append(int(runner.global_step.numpy()))],
    )
    controller.train(steps=12)
    assert seen == [1, 2, 3, 7, 11, 12]


def test_steps_per_loop_callable_returning_garbage(tmp_path):
    controller, _, _ = make_controller(tmp_path, steps_per_loop=lambda step: 0)
    with pytest.raises(ValueError, match=r"`steps_per_loop` returned 0 at step 0"):
        controller.train(steps=4)


def test_trainer_that_does_not_advance_global_step_is_an_error():
    step = orbit.utils.create_global_step()
    controller = orbit.Controller(global_step=step, trainer=StuckTrainer(), steps_per_loop=5)
    with pytest.raises(RuntimeError, match=r"`StuckTrainer.train\(5\)` did not advance `global_step` \(still 0\)"):
        controller.train(steps=10)


def test_train_log_lines_show_target_rate_and_eta(tmp_path, capsys):
    controller, _, _ = make_controller(tmp_path, steps_per_loop=5)
    controller.train(steps=15)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train | step:")]
    loop_lines = [line for line in lines if "target:" in line]
    assert len(loop_lines) == 3
    assert "first loop:" in loop_lines[0] and "incl. tracing" in loop_lines[0]
    for line in loop_lines[1:]:
        assert "target:     15" in line and "steps/sec:" in line and "| eta: 0:00:" in line and "'loss':" in line


def test_steps_per_second_excludes_evaluation_and_first_loop(tmp_path):
    step = orbit.utils.create_global_step()
    trainer = SleepyTrainer(step, seconds_per_step=0.01)  # ~100 steps/s inside trainer.train.
    evaluator = TinyRunner(eval_sleep=0.5)
    controller = orbit.Controller(
        global_step=step, trainer=trainer, evaluator=evaluator, steps_per_loop=10,
        summary_dir=str(tmp_path / "train"), eval_summary_dir=str(tmp_path / "eval"),
    )
    controller.train_and_evaluate(train_steps=40, eval_steps=2, eval_interval=10)
    rates = read_scalars(str(tmp_path / "train"))["steps_per_second"]
    # The first loop is reported apart (it includes tracing); the others include no eval time.
    assert [s for s, _ in rates] == [20, 30, 40]
    # With the 0.5 s evaluation counted, as Orbit does, these would be about 10 / 0.6 = 17 steps/s.
    assert all(rate > 50 for _, rate in rates), rates


def test_steps_per_second_excludes_checkpoint_saving(tmp_path):
    step = orbit.utils.create_global_step()
    trainer = SleepyTrainer(step, seconds_per_step=0.01)

    class SlowManager(tf.train.CheckpointManager):
        def save(self, *args, **kwargs):
            import time
            time.sleep(0.5)
            return super().save(*args, **kwargs)

    manager = SlowManager(tf.train.Checkpoint(step=step), str(tmp_path / "ckpt"), max_to_keep=None,
                          step_counter=step, checkpoint_interval=10)
    controller = orbit.Controller(global_step=step, trainer=trainer, steps_per_loop=10,
                                  checkpoint_manager=manager, summary_dir=str(tmp_path / "train"))
    controller.train(40)
    rates = read_scalars(str(tmp_path / "train"))["steps_per_second"]
    assert len(rates) == 3 and all(rate > 50 for _, rate in rates), rates


def test_nested_outputs_go_to_summary_subdirectories(tmp_path):
    controller, _, _ = make_controller(
        tmp_path, TinyRunner(nested_output=True), summary_dir=str(tmp_path / "train")
    )
    controller.train(steps=6)
    assert "loss" in read_scalars(str(tmp_path / "train" / "metrics"))
    assert "steps_per_second" in read_scalars(str(tmp_path / "train"))


def test_summary_interval_controls_in_step_summaries(tmp_path):
    class SummarizingRunner(TinyRunner):
        def train_step(self, iterator):
            super().train_step(iterator)
            tf.summary.scalar("in_step", 1.0, step=self.global_step)

    controller, _, _ = make_controller(
        tmp_path, SummarizingRunner(), summary_dir=str(tmp_path / "train"), summary_interval=4, steps_per_loop=2
    )
    controller.train(steps=12)
    # record_if is evaluated at each summary call: only steps that are multiples of 4 record.
    scalars = read_scalars(str(tmp_path / "train"))
    (tag,) = [t for t in scalars if t.endswith("in_step")]  # Name-scoped by the while loop.
    assert [s for s, _ in scalars[tag]] == [4, 8, 12]


# -------------------------------------------------------------------- eval


def test_evaluate_without_checkpoint_is_an_error(tmp_path):
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path / "empty"), max_to_keep=3)
    controller = orbit.Controller(global_step=runner.global_step, evaluator=runner, checkpoint_manager=manager)
    with pytest.raises(ValueError, match=r"found no checkpoint to restore in `checkpoint_manager.directory` \(.*empty\)"):
        controller.evaluate(steps=2)


def test_evaluate_initial_weights_on_purpose(tmp_path):
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path / "empty"), max_to_keep=3)
    controller = orbit.Controller(
        global_step=runner.global_step, evaluator=runner, checkpoint_manager=manager,
        allow_evaluate_initial_weights=True,
    )
    output = controller.evaluate(steps=2)
    assert output["eval_loss"] == pytest.approx(1.0)  # Zero kernel, zero inputs, targets of one.


def test_evaluate_complete_dataset_with_minus_one(tmp_path):
    runner = TinyRunner(eval_dataset=tiny_dataset(repeat=False, batch=2))
    controller = orbit.Controller(global_step=runner.global_step, evaluator=runner)
    output = controller.evaluate(steps=-1)
    assert int(runner.eval_examples.numpy()) == 10  # All ten examples, then the dataset ends.
    assert "steps_per_second" not in output
    output = controller.evaluate(steps=3)
    assert int(runner.eval_examples.numpy()) == 6 and output["steps_per_second"] > 0


def test_eval_restore_ignores_optimizer_but_names_missing_variables(tmp_path, caplog):
    trainer_runner = TinyRunner()
    controller, _, manager = make_controller(tmp_path, trainer_runner)
    controller.train(steps=4)

    # An evaluator with the model only: the optimizer's values in the checkpoint are ignored quietly.
    eval_runner = TinyRunner()
    eval_manager = tf.train.CheckpointManager(eval_runner.checkpoint(with_optimizer=False), manager.directory, 3)
    evaluator = orbit.Controller(global_step=eval_runner.global_step, evaluator=eval_runner,
                                 checkpoint_manager=eval_manager)
    assert evaluator.evaluate(steps=2)["eval_loss"] < 1.0
    np.testing.assert_allclose(eval_runner.model.dense.kernel.numpy(), trainer_runner.model.dense.kernel.numpy())

    # A program with a variable the checkpoint lacks: an error naming it.
    wider = TinyRunner(model=TinyModel(extra_layer=True))
    wider_manager = tf.train.CheckpointManager(wider.checkpoint(with_optimizer=False), manager.directory, 3)
    with pytest.raises(ValueError, match=r"does not match the program: it holds no value for 2 of its variables: "
                       r"tiny_model_\d+/dense_\d+/bias:0, tiny_model_\d+/dense_\d+/kernel:0\."):
        orbit.Controller(global_step=wider.global_step, evaluator=wider, checkpoint_manager=wider_manager)


def test_injected_eval_summary_manager_is_used_when_dirs_are_equal(tmp_path):
    class Recorder(orbit.utils.SummaryManagerInterface):
        def __init__(self):
            self.written = []

        def flush(self):
            pass

        def summary_writer(self, relative_path=""):
            return tf.summary.create_noop_writer()

        def write_summaries(self, summary_dict):
            self.written.append(summary_dict)

    recorder = Recorder()
    controller, _, _ = make_controller(
        tmp_path, summary_dir=str(tmp_path / "s"), eval_summary_dir=str(tmp_path / "s"),
        eval_summary_manager=recorder,
    )
    controller.train(steps=2)
    controller.evaluate(steps=2)
    assert len(recorder.written) == 1 and "eval_loss" in recorder.written[0]


def test_train_and_evaluate_interval_caps_loops(tmp_path):
    evals = []
    controller, runner, _ = make_controller(
        tmp_path, steps_per_loop=10, interval=5,
        eval_actions=[lambda output: evals.append(int(runner.global_step.numpy()))],
    )
    output = controller.train_and_evaluate(train_steps=10, eval_steps=2, eval_interval=5)
    assert evals == [5, 10]
    assert "eval_loss" in output
    assert checkpoint_steps(str(tmp_path / "ckpt")) == [5, 10]


def test_evaluate_continuously_with_timeout(tmp_path):
    controller, _, manager = make_controller(tmp_path, interval=5)
    controller.train(steps=10)
    eval_runner = TinyRunner()
    eval_manager = tf.train.CheckpointManager(eval_runner.checkpoint(), manager.directory, 3)
    evaluator = orbit.Controller(global_step=eval_runner.global_step, evaluator=eval_runner,
                                 checkpoint_manager=eval_manager)
    output = evaluator.evaluate_continuously(steps=2, timeout=1)
    assert int(eval_runner.global_step.numpy()) == 10 and "eval_loss" in output


# ------------------------------------------------------ completion marker


def test_train_writes_completion_marker(tmp_path):
    controller, _, manager = make_controller(tmp_path, interval=None)
    controller.train(steps=4, checkpoint_at_completion=False)
    marker_path = os.path.join(manager.directory, run_dir.TRAINING_COMPLETE)
    assert not os.path.exists(marker_path)
    controller.train(steps=6)
    marker = run_dir.read_json(marker_path)
    assert marker["step"] == 6 and marker["checkpoint"].endswith("ckpt-6")
    # Training further makes the marker stale: it is replaced once the new target is reached.
    controller.train(steps=8, checkpoint_at_completion=False)
    assert not os.path.exists(marker_path)
    controller.train(steps=10)
    assert run_dir.read_json(marker_path)["step"] == 10


# ------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), r"`trainer` and `evaluator` should not both be `None`."),
        (dict(trainer="T"), r"`steps_per_loop` is required when `trainer` is provided."),
        (dict(trainer="T", steps_per_loop=0), r"`steps_per_loop` \(0\) must be a positive integer or a callable."),
        (dict(trainer="T", steps_per_loop=2.5), r"`steps_per_loop` \(2.5\) must be a positive integer"),
        (dict(trainer="T", steps_per_loop=2, summary_interval=0), r"`summary_interval` \(0\) must be larger than 0."),
        (dict(trainer="T", steps_per_loop=2, summary_interval=3),
         r"`summary_interval` \(3\) must be a multiple of `steps_per_loop` \(2\)."),
        (dict(trainer="T", steps_per_loop=2, global_step=3), r"`global_step` must be a `tf.Variable`, got int: 3."),
    ],
)
def test_constructor_value_errors(kwargs, message):
    kwargs.setdefault("global_step", tf.Variable(0, dtype=tf.int64))
    if kwargs.get("trainer") == "T":
        kwargs["trainer"] = StuckTrainer()
    with pytest.raises(ValueError, match=message):
        orbit.Controller(**kwargs)


def test_summary_interval_not_checked_against_callable_steps_per_loop():
    orbit.Controller(global_step=tf.Variable(0, dtype=tf.int64), trainer=StuckTrainer(),
                     steps_per_loop=lambda step: 2, summary_interval=3)


def test_method_value_errors(tmp_path):
    step = orbit.utils.create_global_step()
    trainer_only = orbit.Controller(global_step=step, trainer=StuckTrainer(), steps_per_loop=1)
    with pytest.raises(ValueError, match=r"`evaluator` is not set. Pass `evaluator` to `Controller.__init__` before calling `evaluate\(\)`."):
        trainer_only.evaluate()
    with pytest.raises(ValueError, match=r"`checkpoint_manager` is not set.*`save_checkpoint\(\)`"):
        trainer_only.save_checkpoint()
    with pytest.raises(ValueError, match=r"`checkpoint_manager` is not set.*`restore_checkpoint\(\)`"):
        trainer_only.restore_checkpoint()
    runner = TinyRunner()
    eval_only = orbit.Controller(global_step=runner.global_step, evaluator=runner)
    with pytest.raises(ValueError, match=r"`trainer` is not set.*`train\(\)`"):
        eval_only.train(10)
    with pytest.raises(ValueError, match=r"`steps` \(0\) should be > 0, or == -1."):
        eval_only.evaluate(steps=0)
    with pytest.raises(ValueError, match=r"`checkpoint_manager` is not set.*`evaluate_continuously\(\)`"):
        eval_only.evaluate_continuously()
    both, _, _ = make_controller(tmp_path)
    with pytest.raises(ValueError, match=r"`eval_interval` \(0\) must be a positive integer or None."):
        both.train_and_evaluate(train_steps=4, eval_interval=0)


def test_step_timer():
    step = tf.Variable(0, dtype=tf.int64)
    timer = orbit.StepTimer(step)
    step.assign_add(10)
    assert timer.steps_per_second() > 0
    assert timer.steps_per_second(restart=False) == 0.0
