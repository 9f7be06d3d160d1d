"""tfpipe.components.report: the self-contained HTML evaluation report, checked as text and in headless Chromium."""

from __future__ import annotations

import dataclasses
import html.parser
import math
import os
import pathlib
import random
import subprocess
import sys

import pytest

from tfpipe.components import report
from tests.support import browser

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


@dataclasses.dataclass
class Chart:
    """What one `.chart` element holds."""

    svg: dict = dataclasses.field(default_factory=dict)
    polylines: list = dataclasses.field(default_factory=list)
    circles: list = dataclasses.field(default_factory=list)
    titles: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)


class ReportParser(html.parser.HTMLParser):
    """Collects the tags, charts (by data-metric) and table rows of a report or of Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.charts: dict[str, Chart] = {}
        self.rows: list[tuple[dict, list[str]]] = []
        self.cells: list[str] = []  # Texts of all td/th cells, in order.
        self.text: list[str] = []
        self._chart: Chart | None = None
        self._capture: list[str] | None = None
        self._capture_tag = ""

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "figure" and "chart" in classes:
            self._chart = self.charts.setdefault(attributes["data-metric"], Chart())
        elif self._chart is not None and tag == "svg":
            self._chart.svg = attributes
        elif self._chart is not None and tag == "polyline":
            self._chart.polylines.append(attributes)
        elif self._chart is not None and tag == "circle":
            self._chart.circles.append(attributes)
        elif tag == "tr" and "data-step" in attributes:
            self.rows.append((attributes, []))
        if tag in ("td", "th", "title", "p") and self._capture is None:
            self._capture, self._capture_tag = [], tag

    def handle_endtag(self, tag):
        if tag == self._capture_tag and self._capture is not None:
            text = "".join(self._capture).strip()
            if tag in ("td", "th"):
                self.cells.append(text)
                if self.rows and tag == "td":
                    self.rows[-1][1].append(text)
            elif tag == "title" and self._chart is not None:
                self._chart.titles.append(text)
            elif tag == "p" and self._chart is not None:
                self._chart.notes.append(text)
            self._capture = None
        if tag == "figure":
            self._chart = None

    def handle_data(self, data):
        self.text.append(data)
        if self._capture is not None:
            self._capture.append(data)


def parse(document: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(document)
    parser.close()
    return parser


def points_of(polyline: dict) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in pair.split(",")) for pair in polyline["points"].split()]


def check_chart_geometry(chart: Chart, values_by_step: dict[int, float], best_step: int | None) -> None:
    """The chart plots exactly the finite values, inside the plot area, in step order, higher values higher."""
    finite = sorted((step, value) for step, value in values_by_step.items() if math.isfinite(value))
    assert chart.svg.get("viewbox", chart.svg.get("viewBox")) == "0 0 560 260"
    assert len(chart.circles) == len(finite)
    assert len(chart.polylines) == 1
    centres = [(float(c["cx"]), float(c["cy"])) for c in chart.circles]
    assert points_of(chart.polylines[0]) == centres
    for x, y in centres:
        assert 64 <= x <= 540 and 14 <= y <= 216, (x, y)
    xs = [x for x, _ in centres]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    for (_, a), (_, b), (_, ya), (_, yb) in zip(finite, finite[1:], centres, centres[1:]):
        assert (a < b) == (ya > yb) or a == b  # SVG y grows downwards.
    best = [c for c in chart.circles if "best" in c.get("class", "").split()]
    expected_best = 1 if best_step in dict(finite) else 0
    assert len(best) == expected_best
    if expected_best:
        index = [step for step, _ in finite].index(best_step)
        assert chart.circles[index] is best[0]
    assert all(title.startswith("step ") for title in chart.titles) and len(chart.titles) == len(finite)


# ------------------------------------------------------------------------------------------- unit tests


def test_document_is_self_contained():
    document = report.render_report(
        make_records(), title="digits", best_metric="accuracy",
        class_names=["a", "b"], confusion_matrix=[[3, 1], [0, 4]],
    )
    assert document.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert document.rstrip().endswith("</html>")
    lowered = document.lower()
    for forbidden in ("<script", "http://", "https://", "<link", "<img", "<iframe", "@import", "url(", "xmlns"):
        assert forbidden not in lowered, forbidden
    assert parse(document).tags <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "dl", "div", "dt", "dd",
        "p", "section", "figure", "figcaption", "span", "svg", "line", "text", "polyline", "circle", "table",
        "thead", "tbody", "tr", "th", "td",
    }


def test_text_is_escaped():
    evil = '<script>alert("x")</script>'
    records = [
        {"step": 1, "checkpoint": 'ck"<pt>&1', "metrics": {evil: 0.5, "a&b": {"<i>": 1.0}}},
        {"step": 2, "checkpoint": 'ck"<pt>&2', "metrics": {evil: 0.7, "a&b": {"<i>": 2.0}}},
    ]
    document = report.render_report(
        records, title="<b>run</b> & \"co\"", best_metric=evil,
        class_names=["<u>cat</u>", "dog"], confusion_matrix=[[1, 0], [0, 1]],
    )
    assert "<script" not in document.lower()
    assert "<b>" not in document and "<u>" not in document and "<i>" not in document
    parsed = parse(document)
    assert "script" not in parsed.tags and "b" not in parsed.tags and "u" not in parsed.tags
    assert set(parsed.charts) == {evil, "a&b/<i>"}  # Attribute values round-trip exactly.
    assert evil in parsed.cells and "<u>cat</u>" in parsed.cells and 'ck"<pt>&2' in parsed.cells
    assert "<b>run</b> & \"co\"" in "".join(parsed.text)
    assert "&lt;script&gt;" in document and "&quot;" in document


def test_nan_and_inf_are_text_in_the_table_and_skipped_in_charts():
    records = make_records(overrides={200: {"loss": NAN}, 300: {"accuracy": INF}, 400: {"loss": -INF}})
    document = report.render_report(records, title="t")
    parsed = parse(document)
    by_step = {int(attrs["data-step"]): cells for attrs, cells in parsed.rows}
    assert "NaN" in by_step[200] and "inf" in by_step[300] and "-inf" in by_step[400]
    assert '<td class="num nonfinite">NaN</td>' in document
    assert len(parsed.charts["loss"].circles) == 4 and len(parsed.charts["accuracy"].circles) == 5
    assert len(parsed.charts["examples"].circles) == 6
    assert parsed.charts["loss"].notes == ["Not plotted (non-finite): step 200 (NaN), step 400 (-inf)."]
    assert parsed.charts["accuracy"].notes == ["Not plotted (non-finite): step 300 (inf)."]
    assert "Non-finite values (NaN, inf) are shown as text" in document
    assert all(math.isfinite(v) for point in points_of(parsed.charts["loss"].polylines[0]) for v in point)


def test_one_chart_per_metric_with_one_circle_per_plotted_point():
    document = report.render_report(make_records(), title="t", best_step=400)
    parsed = parse(document)
    assert list(parsed.charts) == ["accuracy", "loss", "per_class/recall", "examples"]  # Nested names flattened.
    assert document.count('class="chart"') == 4
    assert "Checkpoints evaluated</dt><dd>6</dd>" in document and "Best step</dt><dd>400</dd>" in document
    for name, chart in parsed.charts.items():
        assert document.count(f'data-metric="{name}"') == 1
        check_chart_geometry(chart, _values(make_records(), name), best_step=400)
    # Counting `<circle` in each chart's slice of the text gives the same answer.
    for slice_ in document.split('<figure class="chart"')[1:]:
        assert slice_.split("</figure>")[0].count("<circle") == 6


def _values(records, name):
    first, _, second = name.partition("/")
    return {r["step"]: (r["metrics"][first][second] if second else r["metrics"][first]) for r in records}


def test_records_are_sorted_by_step_and_axes_are_labelled():
    document = report.render_report(make_records(), title="t")
    parsed = parse(document)
    assert [int(attrs["data-step"]) for attrs, _ in parsed.rows] == [100, 200, 300, 400, 500, 600]
    check_chart_geometry(parsed.charts["accuracy"], _values(make_records(), "accuracy"), best_step=None)
    svg_text = document.split('data-metric="accuracy"')[1].split("</svg>")[0]
    labels = [text.split(">")[-1] for text in svg_text.split("</text>")[:-1]]
    assert labels == ["0.6", "0.7", "0.8", "0.9", "1.0", "100", "200", "300", "400", "500", "600", "step"]


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
    assert f"gs://bucket/run/ckpt-{best}" in document
    for chart in parsed.charts.values():
        (point,) = [c for c in chart.circles if "best" in c["class"]]
        assert point["fill"] == report.BEST_COLOR
    if "best_metric" in kwargs:
        assert f"Best {kwargs['best_metric']}" in document


def test_best_metric_ignores_non_finite_values():
    records = make_records(overrides={600: {"accuracy": NAN}, 500: {"accuracy": INF}})
    parsed = parse(report.render_report(records, title="t", best_metric="accuracy"))
    (best,) = [attrs for attrs, _ in parsed.rows if attrs.get("class") == "best"]
    assert best["data-step"] == "400"


def test_a_single_record_still_draws_a_chart():
    records = [{"step": 7, "checkpoint": "/tmp/run/ckpt-7", "metrics": {"accuracy": 0.25, "loss": 0.0}}]
    document = report.render_report(records, title="one", best_metric="accuracy")
    parsed = parse(document)
    assert set(parsed.charts) == {"accuracy", "loss"}
    for name, chart in parsed.charts.items():
        check_chart_geometry(chart, {7: records[0]["metrics"][name]}, best_step=7)
    assert "1</dd>" in document  # Checkpoints evaluated.


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


def test_metric_with_only_non_finite_values_gets_an_empty_chart():
    records = [{"step": s, "checkpoint": f"c{s}", "metrics": {"loss": NAN, "acc": 0.5}} for s in (1, 2)]
    parsed = parse(report.render_report(records, title="t"))
    assert parsed.charts["loss"].circles == [] and parsed.charts["loss"].polylines == []
    assert "No finite values to plot" in "".join(parsed.text)


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
    )
    parsed = parse(document)
    for name, chart in parsed.charts.items():
        check_chart_geometry(chart, _values(records, name), best_step=3)
    assert "<th scope=\"row\">b</th>" in document
    assert [cells[6] for _, cells in parsed.rows] == ["10", "100", "1000"]  # Integers stay integers.


def test_no_records():
    document = report.render_report([], title="nothing yet")
    assert "No checkpoints were evaluated." in document and 'class="chart"' not in document
    assert "<table" not in document


def test_output_is_deterministic():
    kwargs = dict(title="t", best_metric="loss", higher_is_better=False, class_names=["a", "b"],
                  confusion_matrix=[[5, 1], [2, 7]])
    first = report.render_report(make_records(overrides={300: {"loss": NAN}}), **kwargs)
    again = report.render_report(make_records(overrides={300: {"loss": NAN}}), **kwargs)
    reordered = sorted(make_records(overrides={300: {"loss": NAN}}), key=lambda r: -r["step"])
    assert first == again == report.render_report(reordered, **kwargs)
    script = (
        "import json, sys; from components import report; "
        "records = json.loads(sys.stdin.read()); "
        "sys.stdout.write(report.render_report(records, title='t', best_metric='loss', higher_is_better=False, "
        "class_names=['a', 'b'], confusion_matrix=[[5, 1], [2, 7]]))"
    )
    import json  # pylint: disable=import-outside-toplevel

    # Another process (other hash seed, other timezone and locale) writes the same bytes.
    env = {**os.environ, "PYTHONHASHSEED": "123", "TZ": "Asia/Kolkata", "LC_ALL": "C"}
    out = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(make_records(overrides={300: {"loss": NAN}})),
        capture_output=True, text=True, check=True, cwd=ROOT, env=env, timeout=60,
    )
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
    document = report.render_report(
        make_records(), title="t", class_names=["cat", "dog", "eel"], confusion_matrix=[[8, 1, 0], [2, 6, 0], [0, 0, 0]]
    )
    section = document.split("<h2>Confusion matrix</h2>")[1]
    assert section.count("<td style=\"background-color:#") == 9
    assert 'style="background-color:#ffffff;color:#1f2937" title="true cat, predicted eel: 0 (0.0% of cat)"' in section
    assert 'title="true eel, predicted eel: 0 (0.0% of eel)"' in section  # An empty row divides by nothing.
    peak = report._mix("#ffffff", report.LINE_COLOR, 0.85)  # pylint: disable=protected-access
    assert f'background-color:{peak};color:#ffffff" title="true cat, predicted cat: 8 (88.9% of cat)"' in section
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
    ],
)
def test_malformed_input_is_rejected_by_name(records, kwargs, message):
    with pytest.raises(ValueError, match=message):
        report.render_report(records, **{"title": "t", **kwargs})


def test_importable_without_tensorflow():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, tfpipe.components.report; print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    )
    assert out.stdout.strip() == "False"


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
    document = report.render_report(records, title="digits \u2014 continuous eval", best_metric="accuracy")
    page = tmp_path / "report.html"
    page.write_text(document, encoding="utf-8")

    # (a) The screenshot shows the charts: their line colour, across most of the page width (a polyline
    # covers every pixel column between its first and last point; the points alone would cover few).
    png = browser.screenshot(page, tmp_path / "report.png", window=(1200, 2000), executable=chromium)
    with Image.open(png) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("RGB"))
    line = colour_mask(pixels, report.LINE_COLOR, tolerance=24)
    columns = np.flatnonzero(line.any(axis=0))
    assert line.sum() > 1500, f"only {line.sum()} pixels of the line colour in {png}"
    assert len(columns) > 600, f"the line colour covers only {len(columns)} pixel columns in {png}"
    assert colour_mask(pixels, report.BEST_COLOR, tolerance=24).sum() > 4 * 20, f"no best points in {png}"
    assert (pixels < 100).all(axis=-1).sum() > 2000, f"no dark text in {png}"

    # (b) Chromium's DOM has every chart's SVG with its line and points where the report put them.
    parsed = parse(browser.dump_dom(page, executable=chromium))
    assert "script" not in parsed.tags
    assert list(parsed.charts) == ["accuracy", "loss", "per_class/recall", "examples"]
    for name, chart in parsed.charts.items():
        check_chart_geometry(chart, _values(records, name), best_step=1200)
    assert len(parsed.charts["loss"].circles) == 11
    assert [int(attrs["data-step"]) for attrs, _ in parsed.rows] == list(range(100, 1300, 100))


def test_missing_chromium_fails_with_the_ci_hint(monkeypatch):
    monkeypatch.delenv(browser.SKIP_ENV, raising=False)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(pytest.fail.Exception, match=r"`\.ci/run` must install it \(`apt-get install -y chromium`\)"):
        browser.require_chromium()
    monkeypatch.setenv(browser.SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=r"TFPIPE_SKIP_BROWSER=1"):
        browser.require_chromium()
