"""Every row of docs/inputs.md: the bad value is refused before any work, with the documented message."""

import json
import os
import pathlib
import re

import pytest

from tfpipe import checks
from tfpipe.components import continuous_eval, definitions, evaluate, export, train
from tfpipe.pipelines.local_run import run_local
from tfpipe.pipelines.train_eval_export import build_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]


def table_rows():
    rows = []
    for line in (ROOT / "docs" / "inputs.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("where", "---") and not cells[0].startswith("-"):
            where, name, bad, says = cells
            places = [n for n, i in definitions.INTERFACES.items() if name in i.names()] if where == "all" else [where]
            assert places, f"row `all | {name}` names an input no component declares"
            for place in places:
                rows.append(pytest.param(place, name, json.loads(bad), says, id=f"{place}-{name}-{bad[:40]}"))
    return rows


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("trained"))
    train.run(task="digits", model_dir=model_dir, train_steps=20, steps_per_loop=10, checkpoint_interval=10)
    return model_dir


def call(where, name, value, tmp_path, trained_dir):
    if where == "train":
        args = dict(task="digits", model_dir=str(tmp_path / "new"), train_steps=10)
        return train.run(**{**args, name: value})
    if where == "evaluate":
        return evaluate.run(**{**dict(task="digits", model_dir=trained_dir), name: value})
    if where == "continuous_eval":
        return continuous_eval.run(**{**dict(task="digits", model_dir=trained_dir, idle_timeout=5), name: value})
    if where == "export":
        args = dict(task="digits", model_dir=trained_dir, output_path=str(tmp_path / "new"))
        return export.run(**{**args, name: value})
    if where == "pipelines":
        return build_pipeline(**{"backend": "gke", "image": "registry.example.com/t/tfpipe:1", name: value})
    if where == "run-local":
        return run_local(**{"pipeline_root": str(tmp_path / "new"), name: value})
    raise AssertionError(f"unknown table row location {where!r}")


def test_table_covers_every_component():
    wheres = {p.values[0] for p in table_rows()}
    assert wheres == {"train", "evaluate", "continuous_eval", "export", "pipelines", "run-local"}
    assert len(table_rows()) >= 100


@pytest.mark.parametrize("where, name, bad, says", table_rows())
def test_bad_input_is_refused_before_any_work(where, name, bad, says, tmp_path, trained_dir, monkeypatch):
    monkeypatch.delenv("TFPIPE_IMAGE", raising=False)  # The image rows need the default image.
    before = sorted(os.listdir(trained_dir))
    with pytest.raises(checks.InputError, match=re.escape(says)):  # Not any ValueError: the one-line kind.
        call(where, name, bad, tmp_path, trained_dir)
    assert not (tmp_path / "new").exists()  # Nothing was written...
    assert sorted(os.listdir(trained_dir)) == before  # ...and nothing in an existing run directory changed.
