"""The README's own-DAG example under kfp.local, in each order: it never hangs (tests/test_readme.py compiles it).

kfp.local runs one task at a time, in any order the edges allow. Each run takes one order: kfp.local's own, or one
forced (the evaluator first: it stops after `start_timeout` and the catch-up evaluates; train first: the evaluator
evaluates, the catch-up finds it done); kfp.local's own order is always one of the two forced ones, and a forced
order is the same on every run, so each order runs once. A module of its own, so that pytest-xdist runs it beside
the other README tests.
"""

import json

import pytest

from tests.test_readme import _own_dag
from tfpipe.pipelines import dag

ORDERS = ("kfp", "evaluator-first", "train-first")


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("order", ORDERS)
def test_the_own_dag_example_never_hangs_under_kfp_local(order, tmp_path, monkeypatch):
    """The run ends, and its checkpoint is evaluated exactly once (by the evaluator or by the catch-up)."""
    from kfp import local

    plain = dag.train_and_evaluate

    def forced(*args, **kwargs):
        pair = plain(*args, **kwargs)
        if order == "evaluator-first":
            pair.train.after(pair.watcher)
        elif order == "train-first":
            pair.watcher.after(pair.train)
        return pair

    monkeypatch.setattr(dag, "train_and_evaluate", forced)
    scope = _own_dag("gke")  # @dsl.pipeline traces the function when it is defined: define it anew.
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    model_dir = tmp_path / "run"
    scope["my_training"](model_dir=str(model_dir), train_steps=40, start_timeout=2.0)
    records = sorted(p.name for p in (model_dir / "eval" / "validation" / "records").glob("*.json"))
    assert records == [f"{40:012d}.json"], records
    (run,) = (tmp_path / "root").glob("my-training-*")
    watcher, catch_up = (json.loads((run / task / "executor_output.json").read_text())["parameterValues"]
                         for task in ("continuous-eval", "continuous-eval-2"))
    assert watcher["evaluated"] + catch_up["evaluated"] == 1, (watcher, catch_up)  # Once, by either.
    assert catch_up["best_step"] == 40
    if order == "evaluator-first":  # It stopped after start_timeout; the catch-up evaluated.
        assert (watcher["evaluated"], watcher["best_step"], catch_up["evaluated"]) == (0, -1, 1)
    elif order == "train-first":  # It evaluated; the catch-up found it recorded.
        assert (watcher["evaluated"], catch_up["evaluated"]) == (1, 0)
