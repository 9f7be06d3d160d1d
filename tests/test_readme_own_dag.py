"""The README's own-DAG example under kfp.local, in each order: it never hangs (tests/test_readme.py compiles it).

kfp.local runs one task at a time, in an order the edges allow: the evaluator first (it stops after `start_timeout`
and the catch-up evaluates) or train first (the evaluator evaluates, the catch-up finds it done). The example runs
as written, in kfp.local's own order, and then once more with the other order forced: kfp.local sorts the tasks the
same way on every run, so the two runs cover both orders. A module of its own, so that pytest-xdist runs it beside
the other README tests.
"""

import json

import pytest

from tests.test_readme import _own_dag
from tfpipe.pipelines import dag

ORDERS = ("evaluator-first", "train-first")


def _run(tmp_path, monkeypatch, order=None):
    """Runs the README's example (`order`: None for kfp.local's own, or one forced); returns the order it took."""
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
    # The run ended, and its checkpoint was evaluated exactly once (by the evaluator or by the catch-up).
    records = sorted(p.name for p in (model_dir / "eval" / "validation" / "records").glob("*.json"))
    assert records == [f"{40:012d}.json"], records
    (run,) = (tmp_path / "root").glob("my-training-*")
    watcher, catch_up = (json.loads((run / task / "executor_output.json").read_text())["parameterValues"]
                         for task in ("continuous-eval", "continuous-eval-2"))
    assert watcher["evaluated"] + catch_up["evaluated"] == 1, (watcher, catch_up)  # Once, by either.
    assert catch_up["best_step"] == 40
    if watcher["evaluated"] == 0:  # It started first, stopped after start_timeout; the catch-up evaluated.
        assert (watcher["best_step"], catch_up["evaluated"]) == (-1, 1), (watcher, catch_up)
        return "evaluator-first"
    assert catch_up["evaluated"] == 0, catch_up  # It evaluated; the catch-up found it recorded.
    return "train-first"


@pytest.fixture(scope="module")
def kfps_order(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run(tmp_path_factory.mktemp("kfp"), monkeypatch)


@pytest.mark.timeout(1200)
def test_the_own_dag_example_as_written_never_hangs_under_kfp_local(kfps_order):
    assert kfps_order in ORDERS


@pytest.mark.timeout(1200)
def test_the_own_dag_example_in_the_other_order_never_hangs(kfps_order, tmp_path, monkeypatch):
    (other,) = set(ORDERS) - {kfps_order}
    assert _run(tmp_path, monkeypatch, other) == other
