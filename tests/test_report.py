"""The HTML evaluation report (tfpipe.components.common.report) and its training curves, as text and in headless Chromium."""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import re
import subprocess
import sys

import pytest

from tfpipe.components.common import report
from tests.support import browser
from tests.support.report_page import Chart, parse, vertices

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------------------------------------- helpers


def make_records(steps=(100, 200, 300, 400, 500, 600), overrides: dict | None = None) -> list[dict]:
    """Records like the continuous evaluator writes, shuffled (deterministically) out of step order.

    `overrides` maps a step to metric values that replace the computed ones.
    """
    overrides = overrides or {}
    records = []
    for step in steps:
        metrics = {
            "accuracy": round(1 - 0.5 * math.exp(-step / 250), 6),
            "loss": round(2.3 * math.exp(-step / 300) + 0.05, 6),
            "per_class": {"recall": round(0.8 + step / 5000, 4)},
            "examples": 1000,
        }
        metrics.update(overrides.get(step, {}))
        records.append(
            {"step": step, "checkpoint": f"gs://bucket/run/ckpt-{step}", "metrics": metrics,
             "time": 1_764_000_000 + step, "duration": 2.5}
        )
    random.Random(0).shuffle(records)
    return records


def values_of(records, name):
    first, _, second = name.partition("/")
    return {r["step"]: (r["metrics"][first][second] if second else r["metrics"][first]) for r in records}


def check_chart(chart: Chart, values_by_step: dict[int, float], best_step: int | None) -> None:
    """The chart plots exactly the finite values, inside the picture, in step order, higher values higher."""
    finite = sorted((step, value) for step, value in values_by_step.items() if math.isfinite(value))
    _, _, width, height = (float(v) for v in chart.svg["viewbox"].split())
    points = [(x, y) for x, y, _ in chart.series["eval"].points]
    assert len(points) == len(finite)
    for x, y in points:
        assert 0 < x < width and 0 < y < height, (x, y)
    xs = [x for x, _ in points]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    for (_, a), (_, b), (_, ya), (_, yb) in zip(finite, finite[1:], points, points[1:]):
        assert (a < b) == (ya > yb) or a == b  # SVG y grows downwards.
    (line,) = chart.series["eval"].paths  # The line through the points.
    ends = vertices(line)
    assert ends[0] == pytest.approx(points[0], abs=0.01) and ends[-1] == pytest.approx(points[-1], abs=0.01)
    if best_step in dict(finite):
        ((x, y, style),) = chart.series["best"].points
        assert (x, y) == pytest.approx(points[[s for s, _ in finite].index(best_step)], abs=0.01)
        assert f"fill: {report.BEST_COLOR}" in style
    else:
        assert "best" not in chart.series
    assert "step" in chart.texts  # The x axis is labelled.


def step_to_x(chart: Chart, steps: list[int]):
    """The chart's linear map from step to SVG x, read off two evaluation points at `steps`."""
    (x0, _, _), (x1, _, _) = chart.series["eval"].points[0], chart.series["eval"].points[-1]
    return lambda step: x0 + (step - steps[0]) * (x1 - x0) / (steps[-1] - steps[0])


def value_to_y(chart: Chart, values: list[float]):
    """The chart's linear map from value to SVG y, read off the first and last evaluation points."""
    (_, y0, _), (_, y1, _) = chart.series["eval"].points[0], chart.series["eval"].points[-1]
    return lambda value: y0 + (value - values[0]) * (y1 - y0) / (values[-1] - values[0])


# ------------------------------------------------------------------------------------------- unit tests


def test_document_is_self_contained():
    document = report.render_report(
        make_records(), title="digits", best_metric="accuracy", class_names=["a", "b"],
        confusion_matrix=[[3, 1], [0, 4]], train_curves={"loss": [(s, 1.0 / s) for s in range(10, 600, 10)]},
    )
    assert document.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert document.rstrip().endswith("</html>")
    lowered = document.lower()
    for forbidden in ("<script", "<link", "<img", "<iframe", "@import", "src=", "<?xml", "<!doctype svg"):
        assert forbidden not in lowered, forbidden
    # Every reference points inside the page (`#id`); the only URLs are the SVG namespace names.
    assert re.findall(r"(?:href=\"|url\()([^#])", lowered) == []
    namespaces = {"http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg"}
    assert set(re.findall(r"https?://[^\"]*", lowered)) == namespaces
    assert parse(document).tags <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "dl", "div", "dt", "dd",
        "p", "section", "figure", "figcaption", "span", "table", "thead", "tbody", "tr", "th", "td",
        "svg", "defs", "g", "path", "use", "text", "clippath", "rect",
    }
    ids = re.findall(r' id="([^"]+)"', document)
    assert len(ids) == len(set(ids)), "ids repeat on the page"


def test_text_is_escaped():
    evil = '<script>alert("x")</script>'
    records = [
        {"step": 1, "checkpoint": 'ck"<pt>&1', "metrics": {evil: 0.5, "a&b": {"<i>": 1.0}}},
        {"step": 2, "checkpoint": 'ck"<pt>&2', "metrics": {evil: 0.7, "a&b": {"<i>": 2.0}}},
    ]
    document = report.render_report(
        records, title="<b>run</b> & \"co\"", best_metric=evil, class_names=["<u>cat</u>", "dog"],
        confusion_matrix=[[1, 0], [0, 1]], train_curves={evil: [(0, 0.1), (2, 0.6)], "$x^$": [(1, 2.0)]},
    )
    assert "<script" not in document.lower()
    assert "<b>" not in document and "<u>" not in document and "<i>" not in document
    parsed = parse(document)
    assert "script" not in parsed.tags and "b" not in parsed.tags and "u" not in parsed.tags
    assert set(parsed.charts) == {evil, "a&b/<i>"}  # Attribute values round-trip exactly.
    assert "train" in parsed.charts[evil].series  # The overlay of a hostile name is drawn too.
    assert evil in parsed.cells and "<u>cat</u>" in parsed.cells and 'ck"<pt>&2' in parsed.cells
    assert "<b>run</b> & \"co\"" in "".join(parsed.text)
    assert "&lt;script&gt;" in document and "&#34;" in document


def test_nan_and_inf_are_text_in_the_table_and_skipped_in_charts():
    records = make_records(overrides={200: {"loss": NAN}, 300: {"accuracy": INF}, 400: {"loss": -INF}})
    document = report.render_report(records, title="t", train_curves={"loss": [(50, 2.0), (150, NAN), (250, 1.0)]})
    parsed = parse(document)
    by_step = {int(attrs["data-step"]): cells for attrs, cells in parsed.rows}
    assert "NaN" in by_step[200] and "inf" in by_step[300] and "-inf" in by_step[400]
    assert '<td class="num nonfinite">NaN</td>' in document
    assert len(parsed.charts["loss"].series["eval"].points) == 4
    assert len(parsed.charts["accuracy"].series["eval"].points) == 5
    assert len(parsed.charts["examples"].series["eval"].points) == 6
    assert parsed.charts["loss"].notes == [
        "Not plotted (non-finite): step 200 (NaN), step 400 (-inf).",
        "Training curve: 1 non-finite value not plotted.",
    ]
    assert parsed.charts["accuracy"].notes == ["Not plotted (non-finite): step 300 (inf)."]
    assert len(vertices(parsed.charts["loss"].series["train"].paths[0])) == 2
    assert "Non-finite values (NaN, inf) are shown as text and left out of the charts." in parsed.notes
    for chart in parsed.charts.values():  # Every coordinate is a finite number (`vertices` rejects "nan").
        for series in chart.series.values():
            assert all(math.isfinite(v) for d in series.paths for point in vertices(d) for v in point)
            assert all(math.isfinite(x) and math.isfinite(y) for x, y, _ in series.points)


def test_one_chart_per_metric():
    records = make_records()
    document = report.render_report(records, title="t", best_step=400)
    parsed = parse(document)
    assert list(parsed.charts) == ["accuracy", "loss", "per_class/recall", "examples"]  # Nested names flattened.
    assert document.count('class="chart"') == 4
    assert "<dt>Checkpoints evaluated</dt><dd>6</dd>" in document and "<dt>Best step</dt><dd>400</dd>" in document
    for name, chart in parsed.charts.items():
        check_chart(chart, values_of(records, name), best_step=400)
        assert set(chart.series) == {"eval", "best"}  # No training curve was given.


def test_records_are_sorted_by_step_and_axes_are_labelled():
    document = report.render_report(make_records(), title="t")
    parsed = parse(document)
    assert [int(attrs["data-step"]) for attrs, _ in parsed.rows] == [100, 200, 300, 400, 500, 600]
    chart = parsed.charts["accuracy"]
    check_chart(chart, values_of(make_records(), "accuracy"), best_step=None)
    labels = [text.replace("\u2212", "-") for text in chart.texts]
    steps = [int(text) for text in labels[: labels.index("step")]]  # x tick labels come first: whole steps.
    assert steps == sorted(steps) and len(steps) >= 3 and 50 <= steps[0] and steps[-1] <= 650
    values = [float(text) for text in labels[labels.index("step") + 1:]]  # Then the y tick labels.
    assert values == sorted(values) and len(values) >= 3 and 0.6 <= values[0] and values[-1] <= 1.0


@pytest.mark.parametrize(
    "kwargs, best",
    [
        ({"best_step": 300}, 300),
        ({"best_metric": "accuracy"}, 600),
        ({"best_metric": "loss", "higher_is_better": False}, 600),
        ({"best_metric": "loss", "higher_is_better": True}, 100),
        ({"best_metric": "examples"}, 100),  # Ties: the earliest step.
        ({"best_step": 200, "best_metric": "accuracy"}, 200),  # An explicit step wins.
    ],
)
def test_best_row_and_point_are_marked(kwargs, best):
    document = report.render_report(make_records(), title="t", **kwargs)
    parsed = parse(document)
    best_rows = [(attrs, cells) for attrs, cells in parsed.rows if "best" in attrs.get("class", "").split()]
    assert len(best_rows) == 1 and int(best_rows[0][0]["data-step"]) == best
    assert best_rows[0][1][0] == "\u2605"
    assert [cells[0] for _, cells in parsed.rows].count("\u2605") == 1
    assert f"Best checkpoint: gs://bucket/run/ckpt-{best}" in parsed.notes
    for name, chart in parsed.charts.items():
        check_chart(chart, values_of(make_records(), name), best_step=best)
        assert f"best (step {best})" in chart.texts  # The legend names it.
    if "best_metric" in kwargs:
        assert f"<dt>Best {kwargs['best_metric']} (" in document


def test_best_metric_ignores_non_finite_values():
    records = make_records(overrides={600: {"accuracy": NAN}, 500: {"accuracy": INF}})
    parsed = parse(report.render_report(records, title="t", best_metric="accuracy"))
    (best,) = [attrs for attrs, _ in parsed.rows if attrs.get("class") == "best"]
    assert best["data-step"] == "400"


def test_a_single_evaluation_is_a_table_without_charts():
    records = [{"step": 7, "checkpoint": "/tmp/run/ckpt-7", "metrics": {"accuracy": 0.25, "loss": 0.0}}]
    document = report.render_report(records, title="one", best_metric="accuracy")
    parsed = parse(document)
    assert parsed.charts == {} and "<svg" not in document
    assert any(note.startswith("One checkpoint evaluated: its values are in the table below.") for note in parsed.notes)
    assert [cells[1:4] for _, cells in parsed.rows] == [["7", "0.25", "0"]]
    assert "<dt>Checkpoints evaluated</dt><dd>1</dd>" in document


def test_a_single_evaluation_with_a_training_curve_gets_that_chart():
    records = [{"step": 30, "checkpoint": "/tmp/run/ckpt-30", "metrics": {"accuracy": 0.5, "loss": 0.4}}]
    curves = {"loss": [(10, 0.9), (20, 0.6), (30, 0.45)]}
    parsed = parse(report.render_report(records, title="one", train_curves=curves))
    assert list(parsed.charts) == ["loss"]  # `accuracy` has one value: the table only.
    chart = parsed.charts["loss"]
    assert len(chart.series["eval"].points) == 1 and len(vertices(chart.series["train"].paths[0])) == 3
    assert any(note.startswith("One checkpoint evaluated") for note in parsed.notes)


def test_training_curves_are_drawn_under_the_eval_points_of_the_same_metric():
    records = make_records()
    curve = [(step, 2.5 * math.exp(-step / 280) + 0.1) for step in range(0, 650, 25)]
    parsed = parse(report.render_report(
        records, title="t", best_metric="loss", higher_is_better=False,
        train_curves={"loss": curve, "learning_rate": [(0, 0.1), (600, 0.01)]},
    ))
    assert set(parsed.charts["loss"].series) == {"train", "eval", "best"}
    assert all("train" not in chart.series for name, chart in parsed.charts.items() if name != "loss")
    assert "learning_rate" not in parsed.charts  # Training-only scalars have no eval points to compare.
    chart = parsed.charts["loss"]
    check_chart(chart, values_of(records, "loss"), best_step=600)
    (train_line,) = chart.series["train"].paths
    line = vertices(train_line)
    eval_values = [values_of(records, "loss")[s] for s in (100, 600)]
    x_of, y_of = step_to_x(chart, [100, 600]), value_to_y(chart, eval_values)
    for (step, value), (x, y) in ((curve[0], line[0]), (curve[-1], line[-1])):
        assert (x, y) == pytest.approx((x_of(step), y_of(value)), abs=0.05)
    assert ["train", "eval", "best (step 600)"] == [t for t in chart.texts if t in ("train", "eval") or "best" in t]


def test_metrics_that_are_not_one_number_are_listed_not_shown():
    records = [
        {"step": s, "checkpoint": f"c{s}",
         "metrics": {"acc": 0.5, "per_class": [0.1, 0.9], "name": "x", "ok": True, "nested": {"cm": [[1]]}}}
        for s in (1, 2)
    ]
    document = report.render_report(records, title="t")
    assert list(parse(document).charts) == ["acc"]
    assert "Not shown, as they are not single numbers: per_class, name, ok, nested/cm." in document
    with pytest.raises(ValueError, match=r"`best_metric` must be one of the recorded metrics \['acc'\], got 'ok'"):
        report.render_report(records, title="t", best_metric="ok")


def test_metric_with_fewer_than_two_finite_values_is_not_charted():
    records = [{"step": s, "checkpoint": f"c{s}", "metrics": {"loss": NAN, "acc": 0.5 + s}} for s in (1, 2)]
    parsed = parse(report.render_report(records, title="t"))
    assert list(parsed.charts) == ["acc"]
    assert "Not charted (fewer than two finite values): loss." in parsed.notes


def test_extreme_and_numpy_values_render():
    np = pytest.importorskip("numpy")
    records = [
        {"step": np.int64(s), "checkpoint": f"c{s}",
         "metrics": {"huge": v * 1e308, "tiny": v * 1e-12, "neg": -v, "flat": np.float32(0.25), "big": 10**s}}
        for s, v in ((1, 1.0), (2, -1.5), (3, 1.7))
    ]
    document = report.render_report(
        records, title="t", best_metric="neg", higher_is_better=False,
        class_names=np.array(["a", "b"]), confusion_matrix=np.array([[1, 2], [3, 4]]),
        train_curves={"tiny": [(np.int64(0), np.float64(3e-12))]},
    )
    parsed = parse(document)
    assert list(parsed.charts) == ["tiny", "neg", "flat", "big"]
    assert "Not charted (values too far apart for one axis): huge." in parsed.notes
    for name, chart in parsed.charts.items():
        check_chart(chart, {int(r["step"]): float(r["metrics"][name]) for r in records}, best_step=3)
    assert "<th scope=\"row\">b</th>" in document
    assert [cells[6] for _, cells in parsed.rows] == ["10", "100", "1000"]  # Integers stay integers.
    assert [cells[2] for _, cells in parsed.rows] == ["1e+308", "-1.5e+308", "1.7e+308"]  # In the table, as text.


def test_no_records():
    document = report.render_report([], title="nothing yet")
    assert "No checkpoints were evaluated." in document and 'class="chart"' not in document
    assert "<table" not in document


DETERMINISM_KWARGS = dict(title="t", best_metric="loss", higher_is_better=False, class_names=["a", "b"],
                          confusion_matrix=[[5, 1], [2, 7]])
DETERMINISM_CURVES = {"loss": [[s, 2.4 * math.exp(-s / 300)] for s in range(0, 601, 20)]}


def test_output_is_byte_stable_across_calls_orders_and_processes(tmp_path):
    records = make_records(overrides={300: {"loss": NAN}})
    first = report.render_report(records, **DETERMINISM_KWARGS, train_curves=DETERMINISM_CURVES)
    again = report.render_report(make_records(overrides={300: {"loss": NAN}}), **DETERMINISM_KWARGS,
                                 train_curves=DETERMINISM_CURVES)
    reordered = sorted(records, key=lambda r: -r["step"])
    assert first == again == report.render_report(reordered, **DETERMINISM_KWARGS, train_curves=DETERMINISM_CURVES)
    # Another process, with another hash seed, timezone and locale, and a matplotlibrc that restyles everything
    # the report draws, writes the same bytes and leaves no trace in matplotlib's global state.
    (tmp_path / "matplotlibrc").write_text(
        "lines.linewidth: 9\naxes.facecolor: black\nfont.size: 30\nsvg.fonttype: path\nsvg.hashsalt: other\n"
        "axes.prop_cycle: cycler('color', ['r'])\nlines.marker: x\n")
    script = (
        "import json, sys, matplotlib\n"
        "from tfpipe.components.common import report\n"
        "before = matplotlib.rcParams.copy()\n"
        "data = json.loads(sys.stdin.read())\n"
        "sys.stdout.write(report.render_report(data['records'], train_curves=data['curves'], **data['kwargs']))\n"
        "assert matplotlib.rcParams.copy() == before, 'rcParams changed'\n"
        "assert 'matplotlib.pyplot' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123", "TZ": "Asia/Kolkata", "LC_ALL": "C", "MATPLOTLIBRC": str(tmp_path)}
    payload = json.dumps({"records": records, "curves": DETERMINISM_CURVES, "kwargs": DETERMINISM_KWARGS})
    out = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == first


def test_numbers_line_up_in_table_columns():
    records = [
        {"step": 1, "checkpoint": "c1", "metrics": {"acc": 0.5, "tiny": 1.5e-9}},
        {"step": 2, "checkpoint": "c2", "metrics": {"acc": 0.123456789, "tiny": 2e-9}},
    ]
    cells = parse(report.render_report(records, title="t")).rows
    assert [row[1][2] for row in cells] == ["0.500000", "0.123457"]  # Same decimals in a column.
    assert [row[1][3] for row in cells] == ["1.5e-09", "2e-09"]  # Exponents keep their own format.


def test_confusion_matrix_is_a_shaded_table():
    from matplotlib import colormaps, colors  # pylint: disable=import-outside-toplevel

    document = report.render_report(
        make_records(), title="t", class_names=["cat", "dog", "eel"], confusion_matrix=[[8, 1, 0], [2, 6, 0], [0, 0, 0]]
    )
    section = document.split("<h2>Confusion matrix</h2>")[1]
    assert section.count("<td style=\"background-color:#") == 9
    blank, peak = (colors.to_hex(colormaps["Blues"](f)) for f in (0.0, 0.85))
    assert f'style="background-color:{blank};color:#1f2937" title="true cat, predicted eel: 0 (0.0% of cat)"' in section
    assert 'title="true eel, predicted eel: 0 (0.0% of eel)"' in section  # An empty row divides by nothing.
    assert f'background-color:{peak};color:#ffffff" title="true cat, predicted cat: 8 (88.9% of cat)">8<' in section
    numbered = report.render_report([], title="t", confusion_matrix=[[1, 0], [0, 1]])
    assert '<th scope="row">1</th>' in numbered


@pytest.mark.parametrize(
    "records, kwargs, message",
    [
        ("not records", {}, r"`records` must be a sequence of record mappings, got str"),
        ([{"step": 1, "checkpoint": "c"}], {}, r"`records\[0\]` has no 'metrics'"),
        ([{"step": True, "checkpoint": "c", "metrics": {}}], {},
         r"`records\[0\]\['step'\]` must be an integer, got True"),
        ([{"step": 1, "checkpoint": 3, "metrics": {}}], {}, r"`records\[0\]\['checkpoint'\]` must be a string, got 3"),
        ([{"step": 1, "checkpoint": "c", "metrics": []}], {},
         r"`records\[0\]\['metrics'\]` must be a mapping of metric name to number, got \[\]"),
        ([{"step": "1", "checkpoint": "c", "metrics": {}}], {},
         r"`records\[0\]\['step'\]` must be an integer, got '1'"),
        ([{"step": 1, "checkpoint": "c", "metrics": {"a/b": 1.0, "a": {"b": 2.0}}}], {}, r"names metric 'a/b' twice"),
        ([{"step": 1, "checkpoint": "c", "metrics": {}, "time": NAN}], {},
         r"`records\[0\]\['time'\]` must be a finite number, got nan"),
        ([{"step": 1, "checkpoint": "a", "metrics": {}}, {"step": 1, "checkpoint": "b", "metrics": {}}], {},
         r"`records` hold step 1 twice \(checkpoints 'a' and 'b'\)"),
        ([{"step": 1, "checkpoint": "c", "metrics": {"a": 1.0}}], {"best_step": 2},
         r"`best_step` must be one of the recorded steps \[1\], got 2"),
        ([{"step": 1, "checkpoint": "c", "metrics": {"a": 1.0}}], {"best_metric": "acc"},
         r"`best_metric` must be one of the recorded metrics \['a'\], got 'acc'"),
        ([], {"title": None}, r"`title` must be a string, got None"),
        ([], {"higher_is_better": "yes"}, r"`higher_is_better` must be a bool, got 'yes'"),
        ([], {"confusion_matrix": [[1, 2]]}, r"`confusion_matrix\[0\]` must be a row of 1 counts, got \[1, 2\]"),
        ([], {"confusion_matrix": [[1, -1], [0, 1]]},
         r"`confusion_matrix\[0\]\[1\]` must be a non-negative integer, got -1"),
        ([], {"confusion_matrix": [[1]], "class_names": ["a", "b"]},
         r"`class_names` has 2 names \(\['a', 'b'\]\) but `confusion_matrix` is 1x1"),
        ([], {"train_curves": [("loss", [])]},
         r"`train_curves` must be a mapping of metric name to \(step, value\) pairs, got \[\('loss', \[\]\)\]"),
        ([], {"train_curves": {"loss": "0.5"}},
         r"`train_curves\['loss'\]` must be a sequence of \(step, value\) pairs, got '0.5'"),
        ([], {"train_curves": {"loss": [(1, 0.5), (2.5, 0.4)]}},
         r"`train_curves\['loss'\]\[1\]` must be a \(step, number\) pair, got \(2.5, 0.4\)"),
        ([], {"train_curves": {"loss": [(1, "0.5")]}},
         r"`train_curves\['loss'\]\[0\]` must be a \(step, number\) pair, got \(1, '0.5'\)"),
    ],
)
def test_malformed_input_is_rejected_by_name(records, kwargs, message):
    with pytest.raises(ValueError, match=message):
        report.render_report(records, **{"title": "t", **kwargs})


def test_importable_without_tensorflow_or_matplotlib():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, tfpipe.components.common.report; "
         "print('tensorflow' in sys.modules, 'matplotlib' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    )
    assert out.stdout.strip() == "False False"


# ------------------------------------------------------------------ training curves from real TensorBoard events


def train_run(model_dir: str, steps: int, runner=None):
    """Trains a tiny model with a real Controller, its summaries in `<model_dir>/train`; returns the controller."""
    import tfpipe.controller_core as orbit  # pylint: disable=import-outside-toplevel
    from tests.support.tiny_runners import TinyRunner  # pylint: disable=import-outside-toplevel

    runner = runner or TinyRunner()
    controller = orbit.Controller(global_step=runner.global_step, trainer=runner, steps_per_loop=10,
                                  summary_dir=f"{model_dir}/train")
    controller.train(steps)
    return controller


def evaluate_at(model_dir: str, eval_loss: dict[int, float], *, key=("loss",)) -> str:
    """Writes eval records (like the evaluators do) with `loss` (or a nested key) per step; returns the eval dir."""
    from tfpipe.controller_core import eval_records  # pylint: disable=import-outside-toplevel

    directory = eval_records.eval_dir(model_dir, "validation")
    for step, value in eval_loss.items():
        metrics = {"examples": 10}
        target = metrics
        for part in key[:-1]:
            target = target.setdefault(part, {})
        target[key[-1]] = value
        eval_records.EvalRecords(directory).write(step, f"{model_dir}/ckpt-{step}", metrics)
    return directory


def check_overlay(model_dir: str, eval_dir: str, eval_loss: dict[int, float], name: str, logdir: str) -> Chart:
    """The report in `eval_dir` draws the training curve written in `logdir` under the eval points of `name`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tests.support.tiny_runners import read_scalars  # pylint: disable=import-outside-toplevel

    with tf.io.gfile.GFile(f"{eval_dir}/report.html") as f:
        parsed = parse(f.read())
    written = sorted(read_scalars(logdir)["loss"])  # What training wrote, read independently of TensorBoard.
    chart = parsed.charts[name]
    assert "train" not in parsed.charts["examples"].series
    steps = sorted(eval_loss)
    assert len(chart.series["eval"].points) == len(steps)
    x_of, y_of = step_to_x(chart, steps), value_to_y(chart, [eval_loss[s] for s in steps])
    line = vertices(chart.series["train"].paths[0])
    for (step, value), (x, y) in ((written[0], line[0]), (written[-1], line[-1])):
        assert (x, y) == pytest.approx((x_of(step), y_of(value)), abs=0.05)
    return chart


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_report_action_overlays_the_training_curve_read_incrementally(where, tmp_path, request):
    from tfpipe.components.common import artifacts  # pylint: disable=import-outside-toplevel
    from tfpipe.components.common import training_curves  # pylint: disable=import-outside-toplevel

    model_dir = str(tmp_path / "run") if where == "local" else request.getfixturevalue("gcs_bucket") + "/run"
    controller = train_run(model_dir, 40)
    eval_loss = {20: 0.9, 40: 0.5}
    eval_dir = evaluate_at(model_dir, eval_loss)
    action = artifacts.ReportAction(eval_dir, title="tiny")
    action()
    check_overlay(model_dir, eval_dir, eval_loss, "loss", f"{model_dir}/train")
    curves = training_curves.TrainingCurves.for_eval_dir(eval_dir)
    assert curves.train_dir == f"{model_dir}/train"
    first = curves.read(["loss", "examples"])
    assert list(first) == ["loss"] and [step for step, _ in first["loss"]] == [10, 20, 30, 40]

    # Training goes on, appending to the same event file; the same action (and reader) picks up the new events.
    controller.train(80)
    eval_loss[80] = 0.2
    evaluate_at(model_dir, {80: 0.2})
    action()
    chart = check_overlay(model_dir, eval_dir, eval_loss, "loss", f"{model_dir}/train")
    assert len(chart.series["eval"].points) == 3
    assert [step for step, _ in curves.read(["loss"])["loss"]] == [10, 20, 30, 40, 50, 60, 70, 80]


def test_nested_training_outputs_match_flattened_eval_names(tmp_path):
    from tfpipe.components.common import artifacts  # pylint: disable=import-outside-toplevel
    from tests.support.tiny_runners import TinyRunner  # pylint: disable=import-outside-toplevel

    model_dir = str(tmp_path / "run")
    train_run(model_dir, 30, TinyRunner(nested_output=True))  # Writes `loss` into train/metrics/.
    eval_loss = {10: 0.8, 30: 0.3}
    eval_dir = evaluate_at(model_dir, eval_loss, key=("metrics", "loss"))
    artifacts.ReportAction(eval_dir, title="nested")()
    check_overlay(model_dir, eval_dir, eval_loss, "metrics/loss", f"{model_dir}/train/metrics")


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_no_training_summaries_means_no_training_line(where, tmp_path, request):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfpipe.components.common import artifacts  # pylint: disable=import-outside-toplevel
    from tfpipe.components.common import training_curves  # pylint: disable=import-outside-toplevel

    root = str(tmp_path) if where == "local" else request.getfixturevalue("gcs_bucket")
    model_dir = f"{root}/evaluate-only"
    eval_dir = evaluate_at(model_dir, {100: 0.7, 200: 0.4})
    action = artifacts.ReportAction(eval_dir, title="no train")
    action()
    action()  # Still no train/ directory: still fine.
    with tf.io.gfile.GFile(f"{eval_dir}/report.html") as f:
        parsed = parse(f.read())
    assert set(parsed.charts["loss"].series) == {"eval"}
    assert training_curves.TrainingCurves(f"{model_dir}/train").read(["loss"]) == {}


# ----------------------------------------------------------------------------------------- browser test


def colour_mask(pixels, hex_colour: str, tolerance: int):
    """Pixels (an H x W x 3 array) within `tolerance` of `hex_colour` in every channel."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return (np.abs(pixels.astype(np.int16) - target) <= tolerance).all(axis=-1)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = browser.require_chromium()
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    records = make_records(steps=range(100, 1300, 100), overrides={700: {"loss": NAN}})
    curve = [(step, 2.5 * math.exp(-step / 300) + 0.1) for step in range(0, 1210, 10)]
    document = report.render_report(records, title="digits \u2014 continuous eval", best_metric="accuracy",
                                    train_curves={"loss": curve})
    page = tmp_path / "report.html"
    page.write_text(document, encoding="utf-8")

    # (a) The screenshot shows the charts: the eval lines across most of the page width (a line covers every
    # pixel column between its first and last point; the points alone would cover few), the training curve,
    # the best points, and dark text.
    png = browser.screenshot(page, tmp_path / "report.png", window=(1200, 2000), executable=chromium)
    with Image.open(png) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("RGB"))
    line = colour_mask(pixels, report.LINE_COLOR, tolerance=24)
    columns = np.flatnonzero(line.any(axis=0))
    assert line.sum() > 1500, f"only {line.sum()} pixels of the line colour in {png}"
    assert len(columns) > 600, f"the line colour covers only {len(columns)} pixel columns in {png}"
    train = colour_mask(pixels, report.TRAIN_COLOR, tolerance=12)
    assert len(np.flatnonzero(train.any(axis=0))) > 300, f"no training curve in {png}"
    assert colour_mask(pixels, report.BEST_COLOR, tolerance=24).sum() > 4 * 20, f"no best points in {png}"
    assert (pixels < 100).all(axis=-1).sum() > 2000, f"no dark text in {png}"

    # (b) Chromium's DOM has every chart's SVG with its series where the report put them, and its text as text.
    parsed = parse(browser.dump_dom(page, executable=chromium))
    assert "script" not in parsed.tags
    assert list(parsed.charts) == ["accuracy", "loss", "per_class/recall", "examples"]
    for name, chart in parsed.charts.items():
        check_chart(chart, values_of(records, name), best_step=1200)
        assert {"step", "eval", "best (step 1200)"} <= set(chart.texts)
    assert len(parsed.charts["loss"].series["eval"].points) == 11
    assert len(vertices(parsed.charts["loss"].series["train"].paths[0])) > 2
    assert [int(attrs["data-step"]) for attrs, _ in parsed.rows] == list(range(100, 1300, 100))


def test_missing_chromium_fails_with_the_ci_hint(monkeypatch):
    monkeypatch.delenv(browser.SKIP_ENV, raising=False)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(pytest.fail.Exception, match=r"`\.ci/run` must install it \(`apt-get install -y chromium`\)"):
        browser.require_chromium()
    monkeypatch.setenv(browser.SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=r"TFPIPE_SKIP_BROWSER=1"):
        browser.require_chromium()


def test_the_report_header_says_whether_the_best_checkpoint_passed_the_gate():
    from tfpipe.components.common import artifacts

    best = {"step": 200, "checkpoint": "ckpt-200", "metrics": {"accuracy": 0.95, "loss": 0.2},
            "best_metric": "accuracy", "best_mode": "higher"}
    html = artifacts.render([best], title="t", best=best, thresholds={"accuracy": (">=", 0.9)})
    assert "Export gate" in html and "passed: accuracy &gt;= 0.9" in html
    assert artifacts.gate_text(best, {"accuracy": (">=", 0.99)}) == (
        "missed: metric 'accuracy' is 0.95, which does not meet its threshold >= 0.99")
    assert "Export gate" not in artifacts.render([best], title="t", best=best)
