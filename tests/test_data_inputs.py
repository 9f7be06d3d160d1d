"""Data inputs: how `train_data`/`eval_data`/`test_data` reach a task, what a run records of them, the readers."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import data as data_lib
from tfpipe.components.common import data_identity
from tfpipe.components.evaluate import runtime as evaluate
from tfpipe.components.export import runtime as export
from tfpipe.components.common import run_config
from tfpipe.components import tasks
from tfpipe.components.train import runtime as train
from tfpipe.components.common.data import DataInputs, DataRef
from tfpipe.components.tasks import digits, readers

SHIFT = 3  # The prepared data's labels are the digit + SHIFT (mod 10): only a model trained on it predicts them.
FAST = dict(steps_per_loop=10, checkpoint_interval=10)


def prepare(folder, split="train", *, drop=0, shift=SHIFT):
    """A transformed copy of the bundled digits (labels shifted), as `write_tfrecords` writes a user's Dataset."""
    (tx, ty), (ex, ey) = digits.load_arrays(digits.DigitsConfig())
    x, y = (tx, ty) if split == "train" else (ex, ey)
    if drop:
        x, y = x[:-drop], y[:-drop]
    digits.write_tfrecords(str(folder), x, (y + shift) % 10)
    return str(folder)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("shifted")
    return prepare(root / "train"), prepare(root / "eval", "eval")


def test_a_data_input_is_a_uri_a_json_object_a_dataref_or_an_artifact():
    assert data_lib.check_data_ref("train_data", "") is None
    assert data_lib.check_data_ref("train_data", "gs://bkt/d/") == DataRef("gs://bkt/d")
    given = data_lib.check_data_ref("train_data", '{"uri": "/d", "metadata": {"format": "csv"}}')
    assert given == DataRef("/d", {"format": "csv"}) and given.format == "csv"
    assert data_lib.check_data_ref("x", given.to_json()) == given

    class Artifact:  # What KFP hands a component: gs:// read directly, anything else at its local path.
        def __init__(self, uri, path):
            self.uri, self.path, self.metadata = uri, path, {"rows": 3}

    assert data_lib.check_data_ref("x", Artifact("gs://bkt/a", "/gcs/b/a")) == DataRef("gs://bkt/a", {"rows": 3})
    assert data_lib.check_data_ref("x", Artifact("/host/root/a", "/mnt/root/a")).uri == "/mnt/root/a"
    with pytest.raises(checks.InputError, match=r"`x` must be a gs://bucket/path URI, .* got 1"):
        data_lib.check_data_ref("x", '{"uri": 1}')
    with pytest.raises(checks.InputError, match=r"`x` \('\{\"uri\": \"/d\", \"rows\": 3\}'\) must be a URI .*; "
                       r"unknown key\(s\) \['rows'\]"):
        data_lib.check_data_ref("x", '{"uri": "/d", "rows": 3}')


def test_vertex_data_variables_are_the_defaults_of_data_inputs_the_step_declares():
    environ = {"AIP_TRAINING_DATA_URI": "gs://bkt/d/training-*", "AIP_TEST_DATA_URI": "gs://bkt/d/test-*",
               "AIP_DATA_FORMAT": "tf-record"}
    got = data_lib.vertex_defaults({"train_data": "", "eval_data": "gs://bkt/given"}, environ)
    assert got == {"train_data": DataRef("gs://bkt/d/training-*", {"format": "tf-record"}), "eval_data": "gs://bkt/given"}
    assert "test_data" not in got  # Not an input of that step.


def test_vertex_training_data_uri_reaches_the_task(tmp_path, monkeypatch, shifted):
    monkeypatch.setenv("AIP_TRAINING_DATA_URI", f"{shifted[0]}/part-*")
    monkeypatch.setenv("AIP_DATA_FORMAT", "tf-record")
    train.run(task="digits", model_dir=str(tmp_path / "run"), train_steps=10, **FAST)
    recorded = json.loads((tmp_path / "run" / run_config.RUN_CONFIG).read_text())
    assert recorded["data"]["train_data"]["files"] == 2 and "eval_data" not in recorded["data"]


def test_the_model_learns_from_the_data_inputs_not_the_bundled_data(tmp_path, shifted):
    model_dir = str(tmp_path / "run")
    train.run(task="digits", model_dir=model_dir, train_steps=150, train_data=shifted[0], eval_data=shifted[1],
              **FAST)
    on_given = evaluate.run(task="digits", model_dir=model_dir, train_data=shifted[0], eval_data=shifted[1])
    assert on_given.record["metrics"]["accuracy"] > 0.8
    bundled = evaluate.run(task="digits", model_dir=model_dir, allow_different_config=True, eval_name="bundled")
    assert bundled.record["metrics"]["accuracy"] < 0.3  # It predicts shifted labels.


def test_the_same_data_at_another_uri_resumes_and_changed_data_is_refused(tmp_path, shifted):
    model_dir = str(tmp_path / "run")
    train.run(task="digits", model_dir=model_dir, train_steps=20, train_data=shifted[0], eval_data=shifted[1], **FAST)
    moved = tmp_path / "rerun"
    shutil.copytree(shifted[0], moved / "train")
    shutil.copytree(shifted[1], moved / "eval")
    result = train.run(task="digits", model_dir=model_dir, train_steps=30, train_data=str(moved / "train"),
                       eval_data=str(moved / "eval"), **FAST)
    assert result.final_step == 30
    before = sorted(os.listdir(model_dir))
    changed = prepare(tmp_path / "changed", drop=5)
    with pytest.raises(checks.InputError, match=r"data `train_data`: 2 file\(s\), \d+ bytes, digest \w+ there, 2 file"
                       r"\(s\), \d+ bytes, digest \w+ here \(changed: part-00000-of-00002.tfrecord, part-00001"):
        train.run(task="digits", model_dir=model_dir, train_steps=40, train_data=changed, eval_data=shifted[1])
    assert sorted(os.listdir(model_dir)) == before
    # An evaluator without the run's data is refused (it would evaluate the bundled data), unless allowed.
    with pytest.raises(checks.InputError, match=r"data `eval_data`: 2 file\(s\).* there, none here"):
        evaluate.run(task="digits", model_dir=model_dir, train_data=shifted[0])
    # Export evaluates nothing: it compares only the data it is given.
    exported = export.run(task="digits", model_dir=model_dir, output_path=str(tmp_path / "model"), checkpoint="latest")
    assert exported.step == 30 and exported.exported


def test_export_with_passed_false_writes_nothing(tmp_path):
    result = export.run(task="digits", model_dir=str(tmp_path / "none"), output_path=str(tmp_path / "model"),
                        passed=False)
    assert not result.exported and result.step == -1 and not (tmp_path / "model").exists()


def test_a_task_without_a_data_keyword_refuses_data():
    @tasks.task_factory
    def build(config):
        return digits.build(config)

    with pytest.raises(checks.InputError, match=r"takes no data inputs, but \['train_data'\] were given"):
        tasks._data_keyword(build, "x", DataInputs(train=DataRef("/d")))
    assert tasks._data_keyword(build, "x", DataInputs()) == {}
    assert tasks._data_keyword(digits.build, "digits", None) == {"data": DataInputs()}


def test_the_entry_point_takes_data_as_a_uri(tmp_path, shifted):
    done = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", "--task=digits", f"--model_dir={tmp_path / 'run'}",
         "--train_steps=10", "--steps_per_loop=10", f"--train_data={shifted[0]}",
         '--eval_data={"uri": "%s", "metadata": {"format": "tfrecord"}}' % shifted[1]],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((tmp_path / "run" / run_config.RUN_CONFIG).read_text())
    assert set(recorded["data"]) == {"train_data", "eval_data"}
    assert shifted[0] not in json.dumps(recorded)  # The content, not the run-specific URI.


def test_fingerprints_name_sizes_and_crc32c_with_a_bounded_local_cost(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.bin").write_bytes(b"a" * 3000)
    (tmp_path / "d" / "sub" / "b.bin").write_bytes(os.urandom(5000))
    full = data_identity.fingerprint(DataRef(str(tmp_path / "d")), budget=1 << 20)
    assert full["files"] == 2 and full["bytes"] == 8000 and not full["sampled"]
    assert set(full["listing"]) == {"a.bin", "sub/b.bin"}
    assert full["listing"]["a.bin"][1].startswith("crc32c:")
    data_identity._fingerprint.cache_clear()
    sampled = data_identity.fingerprint(DataRef(str(tmp_path / "d")), budget=4000)
    assert sampled["sampled"] and sampled["listing"]["sub/b.bin"][1].startswith("sampled:")
    assert sampled["names_digest"] == full["names_digest"]
    assert data_identity.compare(full, sampled, "train_data") is None  # Names and sizes agree; content in part.
    glob = data_identity.fingerprint(DataRef(str(tmp_path / "d" / "*.bin")))
    assert glob["files"] == 1 and list(glob["listing"]) == ["a.bin"]
    with pytest.raises(checks.InputError, match=r"`eval_data` \('.*nothing'\) holds no files"):
        data_identity.identify(DataInputs(eval=DataRef(str(tmp_path / "nothing"))))


def test_the_same_files_on_cloud_storage_and_on_disk_have_one_fingerprint(tmp_path, gcs_bucket, shifted):
    for name in os.listdir(shifted[0]):
        tf.io.gfile.copy(os.path.join(shifted[0], name), f"{gcs_bucket}/data/train/{name}")
    on_disk = data_identity.fingerprint(DataRef(shifted[0]))
    on_gcs = data_identity.fingerprint(DataRef(f"{gcs_bucket}/data/train"))
    assert on_gcs == on_disk
    mounted = f"/gcs/{gcs_bucket[len('gs://'):]}/data/train"  # Vertex's mount of the same objects: listed, not read.
    assert data_identity.fingerprint(DataRef(mounted)) == on_disk
    assert data_identity.fingerprint(DataRef(f"{gcs_bucket}/data/train/part-00000*"))["files"] == 1


def test_training_reads_data_on_cloud_storage_from_the_entry_point(tmp_path, gcs_emulator, gcs_bucket, shifted):
    for split, folder in zip(("train", "eval"), shifted):
        for name in os.listdir(folder):
            tf.io.gfile.copy(os.path.join(folder, name), f"{gcs_bucket}/{split}/{name}")
    model_dir = f"{gcs_bucket}/run"
    command = [sys.executable, "-m", "tfpipe.components.train", "--task=digits", f"--model_dir={model_dir}",
               "--train_steps=20", "--steps_per_loop=10", "--checkpoint_interval=10",
               f"--train_data={gcs_bucket}/train", f"--eval_data={gcs_bucket}/eval"]
    env = {**os.environ, **gcs_emulator.env}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # The same data on local disk is the same data: the run resumes.
    again = [c.replace(f"{gcs_bucket}/train", shifted[0]).replace(f"{gcs_bucket}/eval", shifted[1])
             .replace("=20", "=30") for c in command]
    done = subprocess.run(again, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train | done | step: 30" in done.stdout


def _write_csv(folder, rows, header="x,label"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2:])):
        (folder / f"part-{i}.csv").write_text("\n".join([header, *(f"{x},{y}" for x, y in chunk)]) + "\n")


def test_readers_stream_csv_jsonl_saved_and_tfrecord_data_and_shard_per_worker(tmp_path):
    rows = [(float(i), i % 3) for i in range(10)]
    _write_csv(tmp_path / "csv", rows)
    read = list(readers.csv_dataset(str(tmp_path / "csv"), {"x": 0.0, "label": 0}).as_numpy_iterator())
    assert [(r["x"], r["label"]) for r in read] == rows
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "a.jsonl").write_text("".join(json.dumps({"x": x, "label": y, "extra": "z"}) + "\n"
                                                        for x, y in rows))
    signature = {"x": tf.TensorSpec([], tf.float32), "label": tf.TensorSpec([], tf.int64)}
    read = list(readers.jsonl_dataset(str(tmp_path / "jsonl"), signature).as_numpy_iterator())
    assert [(r["x"], r["label"]) for r in read] == rows
    tf.data.Dataset.from_tensor_slices({"x": [r[0] for r in rows]}).save(str(tmp_path / "saved"))
    ref = DataRef(str(tmp_path / "saved"), {"format": "tf-dataset"})
    assert [r["x"] for r in readers.read(ref).as_numpy_iterator()] == [r[0] for r in rows]
    # Two input pipelines: two files -> one file each; one file -> every second example.
    shards = [readers.csv_dataset(str(tmp_path / "csv"), {"x": 0.0},
                                  input_context=tf.distribute.InputContext(2, i, 2)) for i in range(2)]
    assert [[r["x"] for r in s.as_numpy_iterator()] for s in shards] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    shards = [readers.jsonl_dataset(str(tmp_path / "jsonl"), signature,
                                    input_context=tf.distribute.InputContext(2, i, 2)) for i in range(2)]
    assert [[r["x"] for r in s.as_numpy_iterator()] for s in shards] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    with pytest.raises(checks.InputError, match=r"column\(s\) \['y'\] are not in the CSV header \['x', 'label'\]"):
        readers.csv_dataset(str(tmp_path / "csv"), {"y": 0.0})
    with pytest.raises(checks.InputError, match=r"has format 'bigquery'; readable formats"):
        readers.read(DataRef("bq://p.d.t", {"format": "bigquery"}))


def test_write_tfrecords_is_deterministic_and_digits_reads_every_tfrecord_file(tmp_path):
    images = np.random.default_rng(0).random((20, digits.NUM_FEATURES), dtype=np.float32)
    labels = np.arange(20) % 10
    digits.write_tfrecords(str(tmp_path / "a"), images, labels, shards=3)
    digits.write_tfrecords(str(tmp_path / "b"), images, labels, shards=3)
    assert data_identity.listing(str(tmp_path / "a")) == data_identity.listing(str(tmp_path / "b"))
    task = digits.build({"batch_size": 4}, data=DataInputs(train=DataRef(str(tmp_path / "a")),
                                                         eval=DataRef(str(tmp_path / "b"))))
    seen = sorted(int(y) for _, batch in task.eval_dataset(None) for y in batch.numpy())
    assert seen == sorted(labels.tolist())
    with pytest.raises(checks.InputError, match=r"give the data one way"):
        digits.build({"data_uri": str(tmp_path)}, data=DataInputs(train=DataRef(str(tmp_path / "a"))))
