"""Tasks: resolving names and references, config validation, the built-in digits example."""

import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.components.tasks import digits


def test_registered_and_module_references_resolve():
    assert tasks.resolve_factory("digits") is digits.build
    assert tasks.resolve_factory("tests.support.custom_task:build").__name__ == "build"
    assert "digits" in tasks.registered_tasks()


@pytest.mark.parametrize(
    "task, message",
    [
        ("nope", r"`task` \('nope'\) is not a registered task \['digits'\] and not a 'package.module:factory'"),
        ("no_such_module:build", r"`task` \('no_such_module:build'\): cannot import module 'no_such_module'"),
        ("tests.support.custom_task:missing", r"module 'tests.support.custom_task' has no callable 'missing'"),
        ("", r"`task` must be a registered name"),
        (None, r"`task` must be a registered name"),
    ],
)
def test_bad_task_names(task, message):
    with pytest.raises(ValueError, match=message):
        tasks.resolve_factory(task)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"batch": 3}, r"`task_config` for task 'digits' has unknown key\(s\) \['batch'\]; accepted keys: \['batch_size'"),
        ({"batch_size": "64"}, r"`task_config\['batch_size'\]` for task 'digits' must be an integer, got str: '64'"),
        ({"batch_size": True}, r"`task_config\['batch_size'\]` .* must be an integer, got bool: True"),
        ({"learning_rate": "fast"}, r"`task_config\['learning_rate'\]` .* must be a number, got str"),
        ({"data_uri": 5}, r"`task_config\['data_uri'\]` .* must be a string or null, got int: 5"),
        ({"batch_size": 0}, r"`task_config\['batch_size'\]` must be a positive integer, got 0"),
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
        checks.parse_json_object(text, input_name="task_config")


def test_digits_with_no_config():
    task = digits.build({})
    features, labels = next(iter(task.train_dataset(None)))
    assert features.shape == (64, 64) and labels.shape == (64,)
    assert task.class_names == [str(d) for d in range(10)]
    eval_examples = sum(int(b[1].shape[0]) for b in task.eval_dataset(None))
    assert eval_examples == 359  # 20% of the 1797 bundled digits.
    assert task.serving_signature(tf.zeros([2, 64]))["probabilities"].shape == (2, 10)


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
