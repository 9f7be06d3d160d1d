"""Every row of docs/inputs.md: the bad value is refused before any work, with the documented message.

A row's `where` is a component of `tfpipe.components.registry` (its `run()` is called), `pipelines`
(`build_pipeline`) or `run-local` (`run_local`); `all` runs for every component that declares the input.
"""

import json
import os
import pathlib
import re

import pytest

from tfpipe import checks
from tfpipe.components import definitions
from tfpipe.components import registry
from tfpipe.components.train import runtime as train_lib  # To train the run directory the rows read.
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
    train_lib.run(task="digits", model_dir=model_dir, train_steps=20, steps_per_loop=10, checkpoint_interval=10)
    return model_dir


def valid_inputs(tmp_path, trained_dir):
    """Valid values of inputs, by name (not by component): each component's `run()` gets those it declares."""
    return {"task": "digits", "model_dir": trained_dir, "train_steps": 10, "output_path": str(tmp_path / "new"),
            "idle_timeout": 5.0}  # An evaluator that wrongly accepted the bad value stops soon.


def call(where, name, value, tmp_path, trained_dir):
    if where in definitions.INTERFACES:
        declared = definitions.INTERFACES[where].names()
        args = {k: v for k, v in valid_inputs(tmp_path, trained_dir).items() if k in declared}
        return registry.row(where).load_runtime().run(**{**args, name: value})
    if where == "pipelines":
        return build_pipeline(**{"backend": "gke", "image": "registry.example.com/t/tfpipe:1", name: value})
    if where == "run-local":
        return run_local(**{"pipeline_root": str(tmp_path / "new"), name: value})
    raise AssertionError(f"docs/inputs.md: unknown `where` {where!r}: a component of components/registry.py "
                         f"{list(definitions.INTERFACES)}, `pipelines`, `run-local` or `all`")


def test_table_covers_every_component():
    wheres = {p.values[0] for p in table_rows()}
    expected = {*definitions.INTERFACES, "pipelines", "run-local"}
    assert wheres == expected, f"docs/inputs.md has no rows for {sorted(expected - wheres)}"
    assert len(table_rows()) >= 100


@pytest.mark.parametrize("where, name, bad, says", table_rows())
def test_bad_input_is_refused_before_any_work(where, name, bad, says, tmp_path, trained_dir, monkeypatch):
    monkeypatch.delenv("TFPIPE_IMAGE", raising=False)  # The image rows need the default image.
    before = _snapshot(trained_dir)
    with pytest.raises(checks.InputError, match=re.escape(says)):  # Not any ValueError: the one-line kind.
        call(where, name, bad, tmp_path, trained_dir)
    assert not (tmp_path / "new").exists()  # Nothing was written...
    assert _snapshot(trained_dir) == before  # ...and nothing in an existing run directory changed.


def _snapshot(folder):
    """Every file and folder under `folder`, with each file's size and modification time (nanoseconds)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (stat.st_size, stat.st_mtime_ns)
    return found
