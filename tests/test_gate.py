"""The export gate in a user's own DAG, built from the packaged specs and RUN under kfp.local (not only compiled).

The natural `with dsl.If(ce.outputs["passed"] == True): export(...)` never runs its branch under kfp.local 2.17
(pinned below as the upstream defect it is); the packaged `export_if_passed` graph component evaluates the same
condition where it resolves, and runs identically on KFP and Vertex.
"""

import glob
import json
import os
import pathlib

import pytest
from kfp import dsl, local
from typing import NamedTuple

from tfpipe.components import load_component
from tfpipe.components.train import runtime as train

IMAGE = "registry.example.com/team/tfpipe:1"


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("gate") / "run")
    train.run(task="digits", model_dir=model_dir, train_steps=100, steps_per_loop=50, checkpoint_interval=50)
    return model_dir


def run_user_dag(root: pathlib.Path, model_dir: str, thresholds: str, eval_name: str) -> str:
    continuous_eval = load_component("continuous_eval", image=IMAGE)
    export_if_passed = load_component("export_if_passed", image=IMAGE)

    @dsl.pipeline(name="user-gate")
    def user_gate(model_dir: str, thresholds: str):
        watched = continuous_eval(task="digits", model_dir=model_dir, thresholds=thresholds, eval_name=eval_name,
                                  poll_interval=0.2, idle_timeout=60.0)
        export_if_passed(passed=watched.outputs["passed"], task="digits", model_dir=model_dir,
                         thresholds=thresholds, eval_name=eval_name)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=False)
    user_gate(model_dir=model_dir, thresholds=thresholds)
    (run,) = glob.glob(str(root / "user-gate-*"))
    return run


def _output(run: str, task: str):
    found = glob.glob(os.path.join(run, "**", task, "executor_output.json"), recursive=True)
    return json.loads(pathlib.Path(found[0]).read_text()) if found else None


def test_export_runs_when_the_gate_passes(tmp_path, trained_dir):
    run = run_user_dag(tmp_path, trained_dir, '{"accuracy": ">= 0.5"}', eval_name="gate-pass")
    assert _output(run, "continuous-eval")["parameterValues"]["passed"] is True
    model = _output(run, "export")["artifacts"]["model"]["artifacts"][0]
    assert (pathlib.Path(model["uri"]) / "saved_model.pb").exists()
    assert model["metadata"]["metrics"]["accuracy"] >= 0.5


def test_nothing_is_exported_when_the_gate_fails(tmp_path, trained_dir):
    run = run_user_dag(tmp_path, trained_dir, '{"accuracy": ">= 0.9999"}', eval_name="gate-fail")
    assert _output(run, "continuous-eval")["parameterValues"]["passed"] is False
    exported = _output(run, "export")  # The export step always runs (its outputs are the graph's): it exported nothing.
    assert exported["parameterValues"]["exported"] is False and exported["parameterValues"]["step"] == -1
    model = exported["artifacts"]["model"]["artifacts"][0]
    assert model["metadata"] == {"exported": False} and os.listdir(model["uri"]) == []


def test_upstream_kfp_local_skips_an_if_on_a_named_task_output(tmp_path):
    """kfp 2.17's local orchestrator cannot resolve `dsl.If(task.outputs["name"] == ...)` in the DAG that holds
    the task (`ConditionEvaluator._resolve_pipeline_channel` treats `pipelinechannel--<task>-<name>` as a parent
    input): the branch is skipped and the run succeeds. If this starts failing, kfp fixed it: the natural pattern
    then works locally too, and export_if_passed stays correct."""
    marker = tmp_path / "branch-ran"

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def verdict() -> NamedTuple("Verdict", [("passed", bool), ("score", float)]):
        return True, 1.0

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def touch(path: str):
        open(path, "w").write("ran")

    @dsl.pipeline(name="natural-gate")
    def natural_gate(path: str):
        gate = verdict()
        with dsl.If(gate.outputs["passed"] == True):  # noqa: E712 (a KFP condition)
            touch(path=path)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=False)
    natural_gate(path=str(marker))
    assert not marker.exists()
