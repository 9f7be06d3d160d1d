"""Tasks: opt-in factories (names, entry points, declared references), config checks, the digits example."""

import textwrap

import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.components.tasks import digits


def test_registered_and_module_references_resolve():
    assert tasks.resolve_factory("digits") is digits.build
    assert tasks.resolve_factory("tfpipe.components.tasks.digits:build") is digits.build
    assert tasks.resolve_factory("tests.support.custom_task:build").__name__ == "build"
    assert "digits" in tasks.registered_tasks()


@pytest.mark.parametrize(
    "task, message",
    [
        ("nope", r"`task` \('nope'\) is not a registered task \['digits', 'model_garden'\] and not a 'package.module:factory'"),
        ("no_such_module:build", r"`task` \('no_such_module:build'\): cannot import module 'no_such_module'"),
        ("tests.support.custom_task:missing", r"module 'tests.support.custom_task' has no callable 'missing'"),
        ("subprocess:run", r"`task` \('subprocess:run'\) is not declared a tfpipe task factory: 'subprocess' is a "
                           r"module of Python's standard library, which holds none. Nothing was imported"),
        ("os:system", r"is not declared a tfpipe task factory"),
        ("", r"`task` must be a registered task name"),
        (None, r"`task` must be a registered task name"),
        ("x" * 300, r"`task` must be a registered task name .*\(302 characters\)"),
    ],
)
def test_bad_task_names(task, message):
    with pytest.raises(checks.InputError, match=message):
        tasks.resolve_factory(task)


def _module(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def test_a_factory_is_called_only_when_declared(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    called = tmp_path / "called"
    _module(tmp_path, "plain_tasks", f"""
        def build(config):
            open({str(called)!r}, "w").write("ran")
    """)
    with pytest.raises(checks.InputError, match=r"is not declared a tfpipe task factory"):
        tasks.build_task("plain_tasks:build", {})
    assert not called.exists()


def test_an_object_that_answers_every_attribute_is_no_task_factory(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _module(tmp_path, "anything", """
        class Anything:
            def __getattr__(self, name):
                return Anything()
            def __call__(self, *args, **kwargs):
                return Anything()
        everything = Anything()
    """)
    with pytest.raises(checks.InputError, match=r"`task` \('anything:everything'\) is not declared a tfpipe task "
                                                r"factory"):
        tasks.resolve_factory("anything:everything")
    with pytest.raises(checks.InputError, match=r"'unittest' is a module of Python's standard library"):
        tasks.resolve_factory("unittest.mock:call")


def test_the_allow_list_refuses_a_module_before_importing_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = tmp_path / "imported"
    _module(tmp_path, "side_effects", f"open({str(imported)!r}, 'w').write('module code ran')\n")
    monkeypatch.setenv(tasks.ALLOWED_MODULES_ENV, "tfpipe,mypkg")
    with pytest.raises(checks.InputError, match=r"module 'side_effects' is not among the task modules this image "
                                                r"accepts \(\$TFPIPE_TASK_MODULES=tfpipe,mypkg\); nothing was imported"):
        tasks.resolve_factory("side_effects:build")
    assert not imported.exists()
    assert tasks.resolve_factory("digits") is digits.build  # Under an allowed prefix.


def test_installed_packages_register_tasks_by_entry_point(tmp_path, monkeypatch):
    """A distribution's `tfpipe.tasks` entry points name tasks; the real importlib.metadata reads them."""
    _module(tmp_path, "ep_tasks", """
        def build(config):
            raise AssertionError("not called by resolve_factory")
    """)
    info = tmp_path / "ep_tasks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-tasks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tfpipe.tasks]\nmytask = ep_tasks:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert tasks.registered_tasks()["mytask"] == "ep_tasks:build"
    assert tasks.resolve_factory("mytask").__module__ == "ep_tasks"  # No decorator needed: the entry point declares it.


def test_a_task_factory_that_returns_something_else_is_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _module(tmp_path, "odd_tasks", """
        from tfpipe.components.tasks import task_factory

        @task_factory
        def build(config):
            return {"model": None}
    """)
    with pytest.raises(checks.InputError, match=r"the factory returned dict, not a tfpipe.components.tasks.Task"):
        tasks.build_task("odd_tasks:build", {})


def test_a_task_without_what_the_generic_runners_need_is_refused():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    with pytest.raises(checks.InputError, match=r"task 't' gives neither `optimizer` nor `global_step`"):
        tasks.Task(name="t", model=model)
    with pytest.raises(checks.InputError, match=r"task 't' lacks \['train_dataset', 'loss', 'eval_dataset'\]"):
        tasks.Task(name="t", model=model, optimizer=tf.keras.optimizers.SGD())
    with pytest.raises(checks.InputError, match=r"best_mode` must be one of"):
        tasks.Task(name="t", model=model, global_step=tf.Variable(0), trainer=object(), evaluator=object(),
                   best_mode="max")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"batch": 3}, r"`task_config` for task 'digits' has unknown key\(s\) \['batch'\]; accepted keys: \['batch_size'"),
        ({"batch_size": "64"}, r"`task_config\['batch_size'\]` for task 'digits' must be an integer, got str: '64'"),
        ({"batch_size": True}, r"`task_config\['batch_size'\]` .* must be an integer, got bool: True"),
        ({"learning_rate": "fast"}, r"`task_config\['learning_rate'\]` .* must be a number, got str"),
        ({"data_uri": 5}, r"`task_config\['data_uri'\]` .* must be a string or null, got int: 5"),
        ({"batch_size": 0}, r"`task_config\['batch_size'\]` must be an integer from 1 to 1048576, got 0"),
        ({"eval_fraction": 1.5}, r"`task_config\['eval_fraction'\]` must be between 0 and 1, got 1.5"),
    ],
)
def test_digits_config_is_validated(config, message):
    with pytest.raises(ValueError, match=message):
        digits.build(config)


@pytest.mark.parametrize(
    "text, message",
    [("{not json", r"`task_config` is not valid JSON"), ("[1, 2]", r"`task_config` must be a JSON object, got list")],
)
def test_config_json_errors(text, message):
    with pytest.raises(ValueError, match=message):
        checks.check_json_object("task_config", text)


def test_digits_with_no_config():
    task = digits.build({})
    features, labels = next(iter(task.train_dataset(None)))
    assert features.shape == (64, 64) and labels.shape == (64,)
    assert task.class_names == [str(d) for d in range(10)]
    eval_examples = sum(int(b[1].shape[0]) for b in task.eval_dataset(None))
    assert eval_examples == 359  # 20% of the 1797 bundled digits.
    assert task.serving_signature(tf.zeros([2, 64]))["probabilities"].shape == (2, 10)


def test_the_generic_trainer_traces_its_train_loop_once():
    """The optimizer's slot variables exist before the first loop (`KerasTrainer` builds the optimizer): a
    `tf.function` that creates variables on its first call is traced a second time, the cost of a larger model's
    start-up doubled."""
    from tfpipe.components.tasks.keras_runners import KerasTrainer

    strategy = tf.distribute.get_strategy()
    trainer = KerasTrainer(digits.build({"batch_size": 8}), strategy)
    assert len(trainer.optimizer.variables) > 1  # Built: its slots exist beside its step count before any training.
    for _ in range(2):
        trainer.train(tf.constant(2))
    assert trainer._train_loop_fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_digits_from_tfrecords(where, tmp_path, request):
    uri = str(tmp_path / "data") if where == "local" else request.getfixturevalue("gcs_bucket") + "/data"
    digits.write_tfrecords(uri)
    assert len(tf.io.gfile.glob(f"{uri}/train-*.tfrecord")) == 2
    task = digits.build({"data_uri": uri, "batch_size": 32})
    features, labels = next(iter(task.train_dataset(None)))
    assert features.shape == (32, 64) and labels.dtype == tf.int64
    assert sum(int(b[1].shape[0]) for b in task.eval_dataset(None)) == 359
    with pytest.raises(ValueError, match=r"`task_config\['data_uri'\]` \('.*empty'\) holds no train TFRecords"):
        digits.build({"data_uri": uri + "/empty"})
