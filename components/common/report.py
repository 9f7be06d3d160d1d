"""The evaluation report: one self-contained HTML page, written as a KFP `HTML` artifact.

The page (`report_template`, rendered by Jinja2 with autoescaping) holds a header (title, checkpoints
evaluated, best step and metric), one chart per metric over the training steps, a table of every
evaluated checkpoint and, for classifiers, a confusion matrix. A chart shows the evaluations as points
and, for a metric that training also reports, the training curve under them (`train_curves`, e.g. from
`training_curves.TrainingCurves`). A metric with fewer than two finite values gets no chart: its values
are in the table. NaN and ±inf are shown as text, never plotted.

Charts are inline SVG drawn by matplotlib on a `Figure` with its own `FigureCanvasSVG`: no pyplot, no
backend selected, no figure left behind in the caller's process. The same input gives the same bytes
(fixed SVG id salt per chart, no date or creator metadata, nothing from the clock, locale or dict hashing).
matplotlib takes that salt only from its global settings: they are swapped for the time a chart is drawn
(`matplotlib.style.context`, from the defaults, so a user's matplotlibrc changes nothing) and restored.
Importing this module imports neither TensorFlow nor matplotlib (loaded by the first chart or matrix).

Example::

    html = render_report(records, title="digits: continuous eval", best_metric="accuracy",
                         train_curves={"loss": [(50, 2.1), (100, 1.4)]})

Writing it is the caller's (`tfpipe.controller_core.run_dir.write_text_atomic` works on any URI).
"""

from __future__ import annotations

import datetime
import functools
import io
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jinja2
import markupsafe

from tfpipe.components.common import report_inputs
from tfpipe.components.common import report_template

__all__ = ["BEST_COLOR", "LINE_COLOR", "TRAIN_COLOR", "render_report"]

LINE_COLOR = "#2563eb"
"""Colour of the evaluations' line and points."""
TRAIN_COLOR = "#94a3b8"
"""Colour of the training curve."""
BEST_COLOR = "#d97706"
"""Colour of the best checkpoint's point."""

_MISSING = "\u2014"  # An em dash: the record has no value for this metric.
_STAR = "\u2605"
_FIGURE_INCHES = (5.6, 2.6)
_STYLE = {
    "svg.fonttype": "none",  # Text stays <text> (readable, selectable) instead of glyph outlines.
    "font.size": 9,
    "axes.formatter.useoffset": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
# matplotlib numbers its groups per figure (`figure_1`, `line2d_3`): on a page of charts they would repeat.
_AUTOMATIC_ID = re.compile(r'<g id="[A-Za-z0-9.]+_\d+">')


class _Cell(NamedTuple):
    """A table cell or note for the template: its text, CSS classes and hover text."""

    text: str
    css: str
    tip: str = ""


def render_report(
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    best_step: int | None = None,
    best_metric: str | None = None,
    higher_is_better: bool = True,
    class_names: Sequence[str] | None = None,
    confusion_matrix: Sequence[Sequence[int]] | None = None,
    train_curves: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    gate: str | None = None,
) -> str:
    """Renders the evaluation report as a complete, self-contained HTML5 document.

    Args:
        records: The per-checkpoint eval records, in any order: mappings with `step` (int),
            `checkpoint` (str) and `metrics` (metric name -> number; nested mappings are flattened
            to `outer/inner`), and optionally `time` (unix seconds) and `duration` (seconds).
        title: The page title and heading.
        best_step: The step of the best checkpoint; it must be one of the records' steps. When
            None and `best_metric` is given, the best finite value of `best_metric` picks it (the
            earliest step on ties).
        best_metric: The metric that ranks checkpoints; it must be one of the records' metrics.
        higher_is_better: Whether a higher `best_metric` is better.
        class_names: The class names, in label order, for the confusion matrix.
        confusion_matrix: A square matrix of non-negative counts, rows the true class and columns
            the predicted class. Shown when given; without `class_names` the classes are numbered.
        train_curves: Training values per metric name, as (step, value) pairs; a curve is drawn in
            the chart of the eval metric of the same name (others are ignored). On a repeated step
            the last pair counts.
        gate: The export gate's verdict and thresholds, shown in the header (e.g. `passed: accuracy >= 0.9`).

    Returns:
        The HTML document, as text.

    Raises:
        ValueError: If an input is malformed; the message names the input and the value.
    """
    if not isinstance(title, str):
        raise ValueError(f"`title` must be a string, got {title!r}.")
    rows = report_inputs.check_records(records)
    names = report_inputs.metric_names(rows)
    best = report_inputs.resolve_best(rows, names, best_step, best_metric, higher_is_better)
    curves = report_inputs.check_curves(train_curves)
    if confusion_matrix is not None:
        counts = report_inputs.check_matrix(confusion_matrix)
        class_names = report_inputs.check_class_names(class_names, len(counts))
    charts, chart_notes = _charts(rows, names, best, curves)
    best_row = next((row for row in rows if row.step == best), None)
    return _template().render(
        title=title,
        facts=_facts(rows, best_row, best_metric, higher_is_better) + ([("Export gate", gate)] if gate else []),
        best_checkpoint=best_row.checkpoint if best_row else None,
        charts=charts,
        chart_notes=chart_notes,
        table=_table(rows, names, best, best_metric) if rows else None,
        confusion=None if confusion_matrix is None else _confusion(class_names, counts),
    )


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
    return environment.from_string(report_template.TEMPLATE)


# ------------------------------------------------------------------------------------- header and table


def _format_value(value: int | float, decimals: int | None = None) -> str:
    """A value as text: integers as they are, NaN/inf named, floats to 6 significant digits (or `decimals`)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}" if decimals is None else f"{value:.{decimals}f}"


def _column_decimals(values: Sequence[int | float | None]) -> int | None:
    """Decimals that show every finite float of a column to 6 significant digits, so decimal points line up.

    None when a value needs an exponent (very large or very small): then each value keeps its own format.
    """
    texts = [f"{value:.6g}" for value in values if isinstance(value, float) and math.isfinite(value)]
    if any("e" in text for text in texts):
        return None
    return max((len(text.partition(".")[2]) for text in texts), default=0)


def _facts(rows: Sequence[report_inputs.Row], best: report_inputs.Row | None, best_metric: str | None,
           higher_is_better: bool) -> list[tuple[str, str]]:
    """The header's (label, value) boxes."""
    facts = [("Checkpoints evaluated", str(len(rows)))]
    if rows:
        first, last = rows[0].step, rows[-1].step
        facts.append(("Steps", str(first) if first == last else f"{first} \u2013 {last}"))
    facts.append(("Best step", _MISSING if best is None else str(best.step)))
    if best_metric is not None:
        value = best.metrics.get(best_metric) if best else None
        direction = "higher is better" if higher_is_better else "lower is better"
        facts.append((f"Best {best_metric} ({direction})", _MISSING if value is None else _format_value(value)))
    return facts


def _table(rows: Sequence[report_inputs.Row], names: Sequence[str], best: int | None,
           best_metric: str | None) -> dict[str, Any]:
    """The checkpoints table: head cells, one row per checkpoint (the best one starred), notes."""
    directories = {posixpath.dirname(row.checkpoint.rstrip("/")) for row in rows}
    directory = next(iter(directories)) if len(directories) == 1 else None  # Then rows show base names.
    with_time = any(row.time is not None for row in rows)
    with_duration = any(row.duration is not None for row in rows)
    head = [_Cell("", "mark"), _Cell("Step", "num")]
    head += [_Cell(name, "num key", "ranks the checkpoints") if name == best_metric else _Cell(name, "num")
             for name in names]
    head += [_Cell("Evaluated", "")] if with_time else []
    head += [_Cell("Duration", "num")] if with_duration else []
    head.append(_Cell("Checkpoint", ""))
    decimals = {name: _column_decimals([row.metrics.get(name) for row in rows]) for name in names}
    table_rows = []
    for row in rows:
        cells = [_Cell(_STAR if row.step == best else "", "mark"), _Cell(str(row.step), "num")]
        cells += [_value_cell(row.metrics.get(name), decimals[name]) for name in names]
        if with_time:
            cells.append(_Cell(_MISSING if row.time is None else _format_time(row.time), ""))
        if with_duration:
            cells.append(_Cell(_MISSING if row.duration is None else f"{row.duration:.1f} s", "num"))
        shown = posixpath.basename(row.checkpoint.rstrip("/")) if directory else row.checkpoint
        cells.append(_Cell(shown, "path"))
        table_rows.append({"step": row.step, "best": row.step == best, "cells": cells})
    notes = [_Cell(f"Checkpoints in {directory}", "source")] if directory else []
    if any(not math.isfinite(value) for row in rows for value in row.metrics.values()):
        notes.append(_Cell("Non-finite values (NaN, inf) are shown as text and left out of the charts.", "note"))
    other = list(dict.fromkeys(name for row in rows for name in row.other))
    if other:
        notes.append(_Cell(f"Not shown, as they are not single numbers: {', '.join(other)}.", "note"))
    return {"head": head, "rows": table_rows, "notes": notes}


def _value_cell(value: int | float | None, decimals: int | None) -> _Cell:
    """A metric's cell: the number, `NaN`/`inf` (class `nonfinite`), or a dash when the record has none."""
    if value is None:
        return _Cell(_MISSING, "num missing")
    return _Cell(_format_value(value, decimals), "num" if math.isfinite(value) else "num nonfinite")


def _format_time(seconds: float) -> str:
    """Unix seconds as a UTC timestamp (the same text wherever the report is rendered)."""
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------------------------------------ charts


def _charts(rows: Sequence[report_inputs.Row], names: Sequence[str], best: int | None,
            curves: Mapping[str, Sequence[tuple[int, float]]]) -> tuple[list[dict], list[str]]:
    """One chart per metric with two or more finite values; notes on the metrics left uncharted."""
    charts, too_few, too_wide = [], [], []
    for name in names:
        points = [(row.step, float(row.metrics[name])) for row in rows if name in row.metrics]
        evaluated = [(step, value) for step, value in points if math.isfinite(value)]
        trained = [(step, value) for step, value in curves.get(name, ()) if math.isfinite(value)]
        values = [value for _, value in evaluated + trained]
        if len(values) < 2:
            too_few.append(name)
            continue
        low, high = min(values), max(values)
        if not math.isfinite(low - (high - low)) or not math.isfinite(high + (high - low)):
            too_wide.append(name)  # The axis, with room around the values, would pass the float range.
            continue
        best_point = next(((step, value) for step, value in evaluated if step == best), None)
        notes = []
        if skipped := [(step, value) for step, value in points if not math.isfinite(value)]:
            listed = ", ".join(f"step {step} ({_format_value(value)})" for step, value in skipped)
            notes.append(f"Not plotted (non-finite): {listed}.")
        if dropped := len(curves.get(name, ())) - len(trained):
            notes.append(f"Training curve: {dropped} non-finite value{'s' * (dropped > 1)} not plotted.")
        charts.append({
            "name": name,
            "detail": f"last {_format_value(evaluated[-1][1])} at step {evaluated[-1][0]}" if evaluated else "",
            "svg": _chart_svg(len(charts), evaluated, trained, best_point),
            "notes": notes,
        })
    notes = []
    if len(rows) == 1:
        notes.append("One checkpoint evaluated: its values are in the table below. A metric is charted once it "
                     "has two or more values (evaluations, or training summaries of the same name).")
    if too_few and len(rows) > 1:
        notes.append(f"Not charted (fewer than two finite values): {', '.join(too_few)}.")
    if too_wide:
        notes.append(f"Not charted (values too far apart for one axis): {', '.join(too_wide)}.")
    return charts, notes


def _chart_svg(index: int, evaluated: Sequence[tuple[int, float]], trained: Sequence[tuple[int, float]],
               best: tuple[int, float] | None) -> markupsafe.Markup:
    """One chart as inline SVG; its series are the groups `chart<index>-train`, `-eval` and `-best`."""
    # Imported here: a process that writes no chart (export, or one evaluation) never loads matplotlib.
    from matplotlib import style, ticker  # pylint: disable=import-outside-toplevel
    from matplotlib.backends.backend_svg import FigureCanvasSVG  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

    # Defaults plus our style, whatever the caller's matplotlibrc; the salt makes ids fixed and unique per chart.
    with style.context({**_STYLE, "svg.hashsalt": f"tfpipe-report-{index}"}, after_reset=True):
        figure = Figure(figsize=_FIGURE_INCHES, layout="constrained")
        axes = figure.add_subplot()
        if trained:
            axes.plot(*zip(*trained), color=TRAIN_COLOR, linewidth=1.3, label="train", gid=f"chart{index}-train")
        if evaluated:
            axes.plot(*zip(*evaluated), marker="o", markersize=4, linewidth=1.8, color=LINE_COLOR, label="eval",
                      gid=f"chart{index}-eval")
        if best is not None:
            axes.plot(*best, marker="o", markersize=8, markeredgecolor="white", color=BEST_COLOR, linestyle="",
                      label=f"best (step {best[0]})", gid=f"chart{index}-best")
        axes.xaxis.set_major_locator(ticker.MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10], integer=True))
        axes.set_xlabel("step")
        if trained or best is not None:
            figure.legend(loc="outside upper right", ncols=3)
        buffer = io.StringIO()
        FigureCanvasSVG(figure).print_svg(buffer, metadata=_NO_METADATA)
    svg = buffer.getvalue()
    return markupsafe.Markup(_AUTOMATIC_ID.sub("<g>", svg[svg.index("<svg"):]))


# -------------------------------------------------------------------------------------- confusion matrix


def _confusion(names: Sequence[str], counts: Sequence[Sequence[int]]) -> dict:
    """The (checked) confusion matrix as table cells, each shaded by its count on matplotlib's `Blues` map."""
    from matplotlib import colormaps, colors  # pylint: disable=import-outside-toplevel

    peak = max((value for row in counts for value in row), default=0)
    rows = []
    for true_name, row in zip(names, counts, strict=True):
        cells = []
        for predicted, value in zip(names, row, strict=True):
            share = f"{100.0 * value / sum(row):.1f}%" if sum(row) else "0.0%"
            fraction = value / peak if peak else 0.0
            cells.append({
                "text": str(value),
                "background": colors.to_hex(colormaps["Blues"](0.85 * fraction)),
                "color": "#ffffff" if fraction > 0.55 else "#1f2937",
                "tip": f"true {true_name}, predicted {predicted}: {value} ({share} of {true_name})",
            })
        rows.append((true_name, cells))
    return {"names": names, "rows": rows}
