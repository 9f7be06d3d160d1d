"""Profiling (`profile_steps`) and XLA (`jit_compile`) in the train component, on CPU.

The trace is read back with TensorFlow's own XSpace schema (`xplane_pb2`): it sits where TensorBoard's profile
plugin lists runs (`<model_dir>/train/plugins/profile/<run>/<host>.xplane.pb`), holds exactly the steps of the range
(one `IteratorGetNext` per step), and, with `jit_compile`, one run of the XLA executable compiled from the generic
train step per step.
"""

import collections
import glob
import os
import re

import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tfpipe import checks
from tfpipe.components.common import profiling
from tfpipe.components.train import runtime as train
from tfpipe.components.common import vertex_env


def read_trace(path):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def event_counts(space, plane_name):
    (plane,) = [p for p in space.planes if p.name == plane_name]
    counts = collections.Counter()
    for line in plane.lines:
        for event in line.events:
            counts[plane.event_metadata[event.metadata_id].name] += 1
    return counts


def traces(model_dir):
    return sorted(glob.glob(os.path.join(model_dir, "train", profiling.PLUGIN_DIR, "*", "*.xplane.pb")))


def train_loop_ends(output):
    return [int(s) for s in re.findall(r"train \| step: +(\d+) \| target", output)]


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "no-xla"])
def test_profile_steps_traces_exactly_that_range_where_tensorboard_reads_it(tmp_path, capfd, jit_compile):
    model_dir = str(tmp_path / "run")
    train.run(task="digits", model_dir=model_dir, train_steps=60, steps_per_loop=20, checkpoint_interval=20,
              profile_steps="25-35", jit_compile=jit_compile)
    out = capfd.readouterr().out
    assert train_loop_ends(out) == [20, 25, 35, 40, 60]  # Cut at the range's ends, then back on the loops' grid...
    assert sorted(int(p.split("-")[-1].split(".")[0]) for p in glob.glob(f"{model_dir}/ckpt-*.index")) == [
        20, 40, 60]  # ...so the checkpoints keep their places.
    assert "profile | step: 25 | tracing to step 35" in out

    (trace,) = traces(model_dir)  # One run of the profile plugin: plugins/profile/<run>/<host>.xplane.pb.
    assert os.path.basename(trace).endswith(".xplane.pb")
    space = read_trace(trace)
    host = event_counts(space, "/host:CPU")
    assert host["IteratorGetNextOp::DoCompute"] == 10  # Steps 25..34: one batch each, no more.
    assert host["loop_fn"] == 1  # One train loop.
    # With XLA, each step runs one compiled executable (the generic step); without, none runs.
    assert host["CpuExecutable::ExecuteAsyncOnStream"] == (10 if jit_compile else 0)
    # The training summaries are beside it, in the directory TensorBoard is pointed at.
    assert glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))


def test_profiling_off_changes_nothing(tmp_path, capfd):
    model_dir = str(tmp_path / "run")
    train.run(task="digits", model_dir=model_dir, train_steps=40, steps_per_loop=20, checkpoint_interval=20)
    assert train_loop_ends(capfd.readouterr().out) == [20, 40]
    assert not os.path.exists(os.path.join(model_dir, "train", "plugins"))
    assert profiling.maybe_profile(None, model_dir, global_step=tf.Variable(0)) is None


def test_a_range_past_train_steps_is_refused_before_training(tmp_path):
    with pytest.raises(checks.InputError, match=r"`profile_steps` \(50-60\) ends after `train_steps` \(40\): "
                                                r"training stops first. Accepted: a range within 0-40"):
        train.run(task="digits", model_dir=str(tmp_path / "run"), train_steps=40, profile_steps="50-60")
    assert not os.path.exists(tmp_path / "run")


def test_loops_are_cut_at_the_range_and_a_resumed_run_traces_what_is_left(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    profile = profiling.ProfileSteps((100, 110), str(tmp_path), global_step=step)
    cut = profile.steps_per_loop(64)
    assert [cut(s) for s in (0, 64, 100, 105, 110, 128, 174)] == [64, 36, 10, 5, 18, 64, 18]

    step.assign(105)  # A run resumed inside the range: it traces steps 105..109.
    with profile:
        assert profile._tracing
        step.assign(110)
        profile({})
        assert not profile._tracing
    assert len(profile.trace_dirs) == 1 and glob.glob(f"{profile.trace_dirs[0]}/*.xplane.pb")

    step.assign(120)  # Past the range: nothing.
    late = profiling.ProfileSteps((100, 110), str(tmp_path / "late"), global_step=step)
    with late:
        late({})
    assert late.trace_dirs == [] and not os.path.exists(tmp_path / "late")


def test_vertex_tensorboard_dir_gets_the_summaries_and_the_trace(tmp_path, monkeypatch):
    logs = tmp_path / "vertex" / "logs"
    monkeypatch.setenv(vertex_env.TENSORBOARD_LOG_DIR, f"{logs}/")
    monkeypatch.setenv(vertex_env.CHECKPOINT_DIR, str(tmp_path / "vertex" / "checkpoints") + "/")
    result = train.run(task="digits", model_dir="", train_steps=30, steps_per_loop=10, checkpoint_interval=10,
                       profile_steps="10-20")
    model_dir = str(tmp_path / "vertex" / "checkpoints")
    assert result.model_dir == model_dir and tf.train.latest_checkpoint(model_dir).endswith("ckpt-30")
    for directory in (f"{model_dir}/train", f"{logs}/train"):
        assert glob.glob(f"{directory}/events.out.tfevents.*"), directory
        (trace,) = glob.glob(f"{directory}/{profiling.PLUGIN_DIR}/*/*.xplane.pb")
        assert event_counts(read_trace(trace), "/host:CPU")["IteratorGetNextOp::DoCompute"] == 10
    # Both event files hold the same training curve.
    from tensorboard.backend.event_processing import event_accumulator

    curves = []
    for directory in (f"{model_dir}/train", f"{logs}/train"):
        accumulator = event_accumulator.EventAccumulator(directory, size_guidance={"tensors": 0})
        accumulator.Reload()
        curves.append([(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors("loss")])
    assert curves[0] == curves[1] and [s for s, _ in curves[0]] == [10, 20, 30]
