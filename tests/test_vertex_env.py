"""Vertex AI's AIP_* output directories as the components' defaults; explicit inputs win."""

import glob
import os

import pytest

from tfpipe.components.evaluate import runtime as evaluate
from tfpipe.components.export import runtime as export
from tfpipe.components.train import runtime as train
from tfpipe.components.common import vertex_env


def test_with_defaults_fills_only_empty_inputs():
    environ = {vertex_env.CHECKPOINT_DIR: "gs://bkt/base/checkpoints/", vertex_env.MODEL_DIR: "gs://bkt/base/model/"}
    assert vertex_env.with_defaults({"model_dir": "", "export_dir": ""}, environ) == {
        "model_dir": "gs://bkt/base/checkpoints", "export_dir": "gs://bkt/base/model"}
    given = {"model_dir": "gs://bkt/mine", "export_dir": "gs://bkt/serving"}
    assert vertex_env.with_defaults(given, environ) == given  # Explicit inputs win.
    assert vertex_env.with_defaults({"model_dir": ""}, {}) == {"model_dir": ""}  # Not on Vertex: nothing changes.
    assert vertex_env.with_defaults({"task": "digits"}, environ) == {"task": "digits"}  # Inputs it lacks stay out.
    assert vertex_env.tensorboard_dir("eval/x", {vertex_env.TENSORBOARD_LOG_DIR: "gs://bkt/base/logs/"}) == \
        "gs://bkt/base/logs/eval/x"
    assert vertex_env.tensorboard_dir("train", {}) is None


def test_an_empty_model_dir_without_vertex_is_still_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`model_dir` must be a gs://bucket/path URI"):
        train.run(task="digits", model_dir="", train_steps=10)


@pytest.mark.parametrize("variable, value, says", [
    (vertex_env.TENSORBOARD_LOG_DIR, "s3://bucket/logs/", r"`\$AIP_TENSORBOARD_LOG_DIR` \('s3://bucket/logs/'\) has an "
                                                           r"unsupported scheme"),
    (vertex_env.CHECKPOINT_DIR, "/", r"`\$AIP_CHECKPOINT_DIR` \('/'\) is a filesystem root"),
    (vertex_env.CHECKPOINT_DIR, "base/checkpoints/", r"`\$AIP_CHECKPOINT_DIR` \('base/checkpoints/'\) is a relative "
                                                     r"path; it must be a gs:// URI, a /gcs/ path or an absolute path"),
    (vertex_env.MODEL_DIR, "gs:/b/model", r"`\$AIP_MODEL_DIR` \('gs:/b/model'\) is not a gs:// URI"),
])
def test_an_unusable_vertex_directory_is_refused_by_name_before_anything_is_written(
        tmp_path, monkeypatch, variable, value, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=says):
        train.run(task="digits", model_dir="" if variable == vertex_env.CHECKPOINT_DIR else str(tmp_path / "run"),
                  train_steps=10)
    assert os.listdir(tmp_path) == []  # Nothing written, here or in a relative directory.


@pytest.fixture(scope="module")
def vertex_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(vertex_env.CHECKPOINT_DIR, f"{base}/checkpoints/")
        train.run(task="digits", model_dir="", train_steps=20, steps_per_loop=10, checkpoint_interval=10)
    return base


def test_evaluate_and_export_take_vertex_directories(vertex_base, monkeypatch):
    monkeypatch.setenv(vertex_env.CHECKPOINT_DIR, f"{vertex_base}/checkpoints/")
    monkeypatch.setenv(vertex_env.MODEL_DIR, f"{vertex_base}/model/")
    monkeypatch.setenv(vertex_env.TENSORBOARD_LOG_DIR, f"{vertex_base}/logs/")
    result = evaluate.run(task="digits", model_dir="", eval_name="vtx")
    assert result.checkpoint == f"{vertex_base}/checkpoints/ckpt-20"
    for directory in (f"{vertex_base}/checkpoints/eval/vtx", f"{vertex_base}/logs/eval/vtx"):
        assert glob.glob(f"{directory}/events.out.tfevents.*"), directory

    exported = export.run(task="digits", model_dir="", output_path=f"{vertex_base}/artifact", checkpoint="latest")
    assert exported.export_path == f"{vertex_base}/model/20"
    assert os.path.exists(f"{vertex_base}/model/20/saved_model.pb")

    explicit = export.run(task="digits", model_dir=f"{vertex_base}/checkpoints", output_path=f"{vertex_base}/a2",
                          checkpoint="latest", export_dir=f"{vertex_base}/serving")
    assert explicit.export_path == f"{vertex_base}/serving/20"  # The explicit input wins.
