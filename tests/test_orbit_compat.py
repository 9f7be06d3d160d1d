"""Orbit 2.20's documented contracts, and the names subclasses rely on, behave as in Orbit.

They were also run against real Orbit 2.20 (its `orbit` package aliased as `tfpipe.controller_core`)
and pass there: they pin Orbit's behaviour, not tfpipe's.

Each test is shaped like the client code that broke: Model Garden's trainer (aggregated metrics in
`eval_reduce`, best-checkpoint export keyed on one), its pretrained `init_fn`, its vision
`ImageScalarSummaryManager`, and `Controller` subclasses calling Orbit's protected methods.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfpipe.controller_core as orbit
from tfpipe.controller_core import controller as controller_module
from tfpipe.controller_core.actions import export_saved_model
from tests.support.tiny_runners import TinyModel, TinyRunner, checkpoint_steps


class AggregatingRunner(TinyRunner):
    """Evaluates like Model Garden's `base_trainer.Trainer`.

    `eval_begin` returns None; `eval_step` returns per-step logs; `eval_reduce` aggregates them
    eagerly starting from None (Model Garden's `task.aggregate_logs`); `eval_end(aggregated_logs=None)`
    turns the aggregate into metrics (`task.reduce_aggregated_logs`: COCO AP, mIoU, BLEU...).
    """

    def eval_step(self, iterator):
        def step(inputs):
            x, y = inputs
            error = tf.reduce_mean(tf.square(y - self.model(x)), axis=1)
            self.eval_loss.update_state(tf.reduce_mean(error))
            return {"error": error}

        return self.strategy.run(step, args=(next(iterator),))

    def eval_reduce(self, state=None, step_outputs=None):
        state = state if state is not None else {"errors": []}
        state["errors"].append(step_outputs["error"].numpy())
        return state

    def eval_end(self, aggregated_logs=None):
        logs = {"eval_loss": self.eval_loss.result()}
        if aggregated_logs:
            errors = np.concatenate(aggregated_logs["errors"])
            logs["examples"] = float(errors.size)
            logs["median_error"] = float(np.median(errors))  # Only computable from the aggregate.
        return logs


# ------------------------------------------------- 1: eval_reduce without a state


@pytest.mark.parametrize("use_tf_function", [True, False], ids=["tf_function_step", "eager"])
def test_eval_reduce_runs_when_eval_begin_returns_none(use_tf_function):
    runner = AggregatingRunner(eval_options=orbit.StandardEvaluatorOptions(use_tf_function=use_tf_function))
    output = runner.evaluate(tf.constant(3))
    assert output["examples"] == 6.0 and output["median_error"] == pytest.approx(1.0)


def test_tf_while_loop_without_state_skips_eval_reduce_as_in_orbit():
    runner = AggregatingRunner(eval_options=orbit.StandardEvaluatorOptions(use_tf_while_loop=True))
    output = runner.evaluate(tf.constant(3))
    assert "median_error" not in output and float(output["eval_loss"]) == pytest.approx(1.0)


def test_best_export_keyed_on_an_aggregated_metric(tmp_path):
    runner = AggregatingRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path / "ckpt"), max_to_keep=None,
                                         step_counter=runner.global_step, checkpoint_interval=4)
    best = orbit.actions.NewBestMetric("median_error", higher_is_better=False,
                                       filename=str(tmp_path / "best_median_error.json"))
    files = orbit.actions.ExportFileManager(str(tmp_path / "exports" / "model"), max_to_keep=1,
                                            next_id_fn=runner.global_step.numpy)
    serve = tf.function(lambda x: runner.model(x), input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    export = orbit.actions.ExportSavedModel(runner.model, files, signatures={"serving_default": serve})
    outputs = []
    controller = orbit.Controller(
        global_step=runner.global_step, trainer=runner, evaluator=runner, steps_per_loop=2,
        checkpoint_manager=manager,
        eval_actions=[orbit.actions.ConditionalAction(condition=best.test, action=[export, best.commit]),
                      outputs.append],
    )
    controller.train_and_evaluate(train_steps=8, eval_steps=2, eval_interval=4)
    assert [sorted(o) for o in outputs] == [["eval_loss", "examples", "median_error"]] * 2
    errors = [float(o["median_error"]) for o in outputs]
    assert errors[1] < errors[0]  # Training lowers the error: the second evaluation is the new best.
    assert files.managed_files == [str(tmp_path / "exports" / "model-8")]
    assert json.load(open(tmp_path / "best_median_error.json")) == pytest.approx(errors[1])


# ------------------------------------------------- 2: weights set by init_fn


def test_evaluate_with_weights_loaded_by_init_fn(tmp_path):
    pretrained = TinyModel()
    pretrained.dense.kernel.assign(tf.fill([3, 4], 0.25))
    pretrained.dense.bias.assign(tf.fill([4], 0.5))
    init_checkpoint = tf.train.Checkpoint(model=pretrained).write(str(tmp_path / "pretrained" / "init"))

    runner = TinyRunner()
    loaded = []

    def init_fn():  # Model Garden: trainer.initialize -> task.initialize loads `init_checkpoint`.
        tf.train.Checkpoint(model=runner.model).read(init_checkpoint).assert_existing_objects_matched()
        loaded.append(True)

    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path / "run"), max_to_keep=3, init_fn=init_fn)
    controller = orbit.Controller(global_step=runner.global_step, evaluator=runner, checkpoint_manager=manager)
    output = controller.evaluate(steps=2)
    assert loaded == [True]
    np.testing.assert_allclose(runner.model.dense.bias.numpy(), 0.5)
    assert float(output["eval_loss"]) == pytest.approx(0.25)  # Zero inputs: predictions are the bias.


# ------------------------------------------------- 3: summary-manager subclasses


class ImageScalarSummaryManager(orbit.utils.SummaryManager):
    """Written as Model Garden vision's: sets Orbit's attributes itself and overrides `_write_summaries`."""

    def __init__(self, summary_dir, scalar_summary_fn, image_summary_fn, max_outputs=20, global_step=None):
        self._enabled = summary_dir is not None
        self._summary_dir = summary_dir
        self._scalar_summary_fn = scalar_summary_fn
        self._image_summary_fn = image_summary_fn
        self._summary_writers = {}
        self._max_outputs = max_outputs
        self._global_step = tf.summary.experimental.get_step() if global_step is None else global_step

    def _write_summaries(self, summary_dict, relative_path=""):
        for name, value in summary_dict.items():
            if isinstance(value, dict):
                self._write_summaries(value, relative_path=os.path.join(relative_path, name))
            else:
                with self.summary_writer(relative_path).as_default():
                    if name.startswith("image/"):
                        self._image_summary_fn(name, value, self._global_step, max_outputs=self._max_outputs)
                    else:
                        self._scalar_summary_fn(name, value, self._global_step)


def summary_plugins(logdir):
    found = {}
    for path in tf.io.gfile.glob(f"{logdir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found[value.tag] = (event.step, value.metadata.plugin_data.plugin_name)
    return found


def test_summary_manager_subclass_with_orbit_names_writes_images(tmp_path):
    step = tf.Variable(3, dtype=tf.int64)
    manager = ImageScalarSummaryManager(str(tmp_path), tf.summary.scalar, tf.summary.image, global_step=step)
    images = tf.zeros([2, 4, 4, 3])
    manager.write_summaries({"image/masks": images, "loss": 1.5, "per_class": {"image/x": images, "iou": 0.5}})
    manager.flush()
    assert summary_plugins(str(tmp_path)) == {"image/masks": (3, "images"), "loss": (3, "scalars")}
    assert summary_plugins(str(tmp_path / "per_class")) == {"image/x": (3, "images"), "iou": (3, "scalars")}

    disabled = ImageScalarSummaryManager(None, tf.summary.scalar, tf.summary.image, global_step=step)
    disabled.write_summaries({"image/masks": images})
    disabled.flush()


def test_image_summary_manager_as_the_controllers_eval_summary_manager(tmp_path):
    class ImageRunner(TinyRunner):
        def eval_end(self):
            return {**super().eval_end(), "image/inputs": tf.zeros([1, 2, 2, 1])}

    runner = ImageRunner()
    manager = ImageScalarSummaryManager(str(tmp_path / "validation"), tf.summary.scalar, tf.summary.image,
                                        global_step=runner.global_step)
    controller = orbit.Controller(global_step=runner.global_step, evaluator=runner, eval_summary_manager=manager)
    controller.evaluate(steps=2)
    plugins = summary_plugins(str(tmp_path / "validation"))
    assert plugins["image/inputs"][1] == "images" and plugins["eval_loss"][1] == "scalars"


# ------------------------------------------------- 4: Controller subclasses


def test_controller_subclass_uses_orbit_protected_methods(tmp_path):
    runner = TinyRunner()
    manager = tf.train.CheckpointManager(runner.checkpoint(), str(tmp_path), max_to_keep=None,
                                         step_counter=runner.global_step, checkpoint_interval=4)
    loops = []

    class EarlyStopController(orbit.Controller):
        """Orbit's early-stopping example, plus the protected methods Model Garden-style subclasses call."""

        def _train_n_steps(self, num_steps):  # Orbit's signature, called by train().
            loops.append(num_steps)
            super()._train_n_steps(num_steps)

        def train_and_evaluate(self, train_steps=None, eval_steps=None, eval_interval=None):
            self._require("trainer", for_method="train_and_evaluate")
            while self.global_step.numpy() < train_steps:
                self.train(steps=self.global_step.numpy() + eval_interval, checkpoint_at_completion=False)
                self._sync_on_async_checkpointing()
                if self.evaluate(steps=eval_steps)["eval_loss"] < 0.5:
                    return

    controller = EarlyStopController(global_step=runner.global_step, trainer=runner, evaluator=runner,
                                     steps_per_loop=2, checkpoint_manager=manager, enable_async_checkpointing=True)
    assert controller._enable_async_checkpoint_saving is True
    assert controller._checkpoint_options.enable_async is True
    assert controller._steps_per_loop == 2 and controller.steps_per_loop == 2 and controller.step_timer is None
    controller.train_and_evaluate(train_steps=100, eval_steps=2, eval_interval=4)
    stopped = int(runner.global_step.numpy())
    assert stopped < 100 and loops == [2] * (stopped // 2)
    assert isinstance(controller.step_timer, controller_module.StepTimer)

    controller._sync_on_async_checkpointing()
    saved = checkpoint_steps(str(tmp_path))
    controller._train_n_steps(2)  # Called directly, as subclasses do: one loop, no save.
    assert int(runner.global_step.numpy()) == stopped + 2 and checkpoint_steps(str(tmp_path)) == saved
    assert controller._maybe_save_checkpoint(check_interval=False) is True
    controller._sync_on_async_checkpointing()
    assert checkpoint_steps(str(tmp_path))[-1] == stopped + 2
    with pytest.raises(ValueError, match=r"`evaluator` is not set. Pass `evaluator` to `Controller.__init__` "
                                         r"before calling `x\(\)`."):
        orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=1)._require(
            "evaluator", for_method="x")


def test_controller_module_keeps_orbit_helpers(capsys):
    controller_module._log("hello")
    assert capsys.readouterr().out == "hello\n"
    assert controller_module._format_output({"a": 1.5}) == "{'a': 1.5}"
    step = tf.Variable(0, dtype=tf.int64)
    timer = controller_module.StepTimer(step)
    step.assign(5)
    assert timer.steps_per_second() > 0 and timer.last_iteration == 5
    timer.start()
    assert timer.steps_per_second(restart=False) == 0.0


def test_train_and_evaluate_goes_through_overridden_train_and_evaluate(tmp_path):
    calls = []

    class Recording(orbit.Controller):
        def train(self, steps, checkpoint_at_completion=True):
            calls.append(("train", int(steps), checkpoint_at_completion))
            super().train(steps, checkpoint_at_completion)

        def evaluate(self, steps=-1):
            calls.append(("evaluate", steps))
            return super().evaluate(steps)

    runner = TinyRunner()
    Recording(global_step=runner.global_step, trainer=runner, evaluator=runner,
              steps_per_loop=2).train_and_evaluate(train_steps=8, eval_steps=1, eval_interval=4)
    assert calls == [("train", 4, False), ("evaluate", 1), ("train", 8, False), ("evaluate", 1)]


# ------------------------------------------------- 5: actions


@pytest.mark.parametrize(
    "path, expected",
    [
        ("gs://bucket/a//b/", "gs://bucket/a/b"),
        ("gs://bucket/./a/../b", "gs://bucket/b"),
        ("/tmp//x/./y/", "/tmp/x/y"),
        ("relative//dir", "relative/dir"),
    ],
)
def test_safe_normpath(path, expected):
    assert export_saved_model.safe_normpath(path) == expected


def test_export_file_manager_normalises_double_slash_in_base_name(tmp_path):
    manager = orbit.actions.ExportFileManager(f"{tmp_path}//exports//model", max_to_keep=1)
    for _ in range(2):
        tf.io.gfile.makedirs(manager.next_name())
    assert manager.managed_files == [f"{tmp_path}/exports/model-0", f"{tmp_path}/exports/model-1"]
    manager.clean_up()
    assert manager.managed_files == [f"{tmp_path}/exports/model-1"]


def test_export_file_manager_subdirectory_suffixes_and_counter(tmp_path):
    base = str(tmp_path / "m")
    for name in ("m-0/saved_model", "m-1", "m-2/saved_model", "m-3/saved_model", "m-4.old/saved_model",
                 "m-x/saved_model"):
        tf.io.gfile.makedirs(str(tmp_path / name))
    manager = orbit.actions.ExportFileManager(base, max_to_keep=2, subdirectory="saved_model/")
    # Only `{base}-{id}` names count; `m-1` has no `saved_model`: listed by neither.
    assert manager.managed_files == [f"{base}-0/saved_model", f"{base}-2/saved_model", f"{base}-3/saved_model"]
    assert manager.next_name() == f"{base}-4/saved_model"  # Counter: past the largest id on disk (m-3).
    assert manager.next_name() == f"{base}-5/saved_model"
    manager.clean_up()
    assert manager.managed_files == [f"{base}-2/saved_model", f"{base}-3/saved_model"]
    assert os.path.isdir(f"{base}-0") and not os.path.exists(f"{base}-0/saved_model")  # Only the subdirectory goes.
    assert os.path.isdir(str(tmp_path / "m-4.old/saved_model"))  # Not a managed name: untouched.

    keep_all = orbit.actions.ExportFileManager(base, max_to_keep=0, subdirectory="saved_model")
    keep_all.clean_up()  # As in Orbit (`files[:-0]` is empty), 0 deletes nothing.
    assert len(keep_all.managed_files) == 2


def test_json_persisted_value_empty_file_and_no_file(tmp_path):
    path = tmp_path / "value.json"
    path.write_text("")  # E.g. a write cut short on a filesystem without atomic renames.
    value = orbit.actions.JSONPersistedValue({"a": 1}, str(path))
    assert value.read() == {"a": 1} and json.loads(path.read_text()) == {"a": 1}
    in_memory = orbit.actions.JSONPersistedValue(5, None)
    in_memory.write(6)
    assert in_memory.read() == 6


def test_conditional_action_keeps_action_as_given():
    single = lambda output: None  # noqa: E731
    assert orbit.actions.ConditionalAction(lambda o: True, single).action is single
