"""The evaluation report: one self-contained HTML page, written as a KFP `HTML` artifact.

KFP and Vertex AI render an `HTML` artifact in a sandboxed iframe, so the page carries everything it
shows: inline CSS and inline SVG, no scripts, no fonts, stylesheets or images from elsewhere. It holds
a header (title, checkpoints evaluated, best step and metric), one SVG line chart per metric over the
training steps, a table of every evaluated checkpoint and, for classifiers, a confusion matrix.

The same input always gives the same bytes (nothing depends on the clock, the locale or dict hashing),
so reports can be compared between runs. Standard library only: importing this module does not import
TensorFlow.

Example::

    html = render_report(records, title="digits: continuous eval", best_step=300, best_metric="accuracy")

Writing it is the caller's (`tfpipe.controller_core.run_dir.write_text_atomic` works on any URI).
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import itertools
import math
import numbers
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["LINE_COLOR", "BEST_COLOR", "render_report"]

LINE_COLOR = "#2563eb"
"""Colour of every chart's line and points (only the charts use it)."""
BEST_COLOR = "#d97706"
"""Colour of the best checkpoint's point and marker line in the charts."""

_MISSING = "\u2014"  # An em dash: the record has no value for this metric.
_STAR = "\u2605"

# Chart geometry, in SVG user units (the SVG scales to its container's width).
_WIDTH, _HEIGHT = 560, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 14, 44

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f8fafc; color: #1f2937;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 24px 24px 40px; }
h1 { font-size: 22px; font-weight: 650; margin: 0 0 14px; overflow-wrap: anywhere; }
h2 { font-size: 16px; font-weight: 650; margin: 28px 0 10px; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 0; }
.summary div { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 14px;
  min-width: 130px; }
.summary dt { color: #6b7280; font-size: 12px; }
.summary dd { margin: 0; font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.muted { color: #6b7280; font-weight: 400; }
.note { color: #92400e; font-size: 12px; margin: 6px 0 0; }
.source { color: #6b7280; font-size: 12px; margin: 10px 0 0; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; }
.chart { margin: 0; background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 12px; }
.chart figcaption { font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
.chart svg { display: block; width: 100%; height: auto; }
.chart svg text { font-family: inherit; font-size: 11px; fill: #4b5563; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.records { width: 100%; }
.records th:last-child, .records td.path { width: 100%; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eef0f3; text-align: left; white-space: nowrap; }
thead th { background: #f3f4f6; font-weight: 600; font-size: 12px; color: #374151; }
th.num, td.num { text-align: right; }
td.path { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12px; color: #4b5563; }
td.mark { color: #b45309; width: 1.5em; padding-right: 0; }
tr.best td { background: #fff7e6; font-weight: 600; }
td.nonfinite { color: #b91c1c; }
td.missing { color: #9ca3af; }
th.key { text-decoration: underline dotted #6b7280; text-underline-offset: 3px; }
table.cm td { text-align: right; min-width: 56px; }
table.cm th[scope=row] { font-weight: 600; }
table.cm .corner { font-weight: 400; color: #6b7280; }
"""


@dataclasses.dataclass(frozen=True)
class _Row:
    """One evaluated checkpoint, checked and with its metrics flattened."""

    step: int
    checkpoint: str
    metrics: dict[str, int | float]
    other: tuple[str, ...]  # Metrics that are not one number (e.g. a per-class list): not shown.
    time: float | None
    duration: float | None


@dataclasses.dataclass(frozen=True)
class _Axis:
    """A linear axis: its domain (after rounding to ticks), its ticks and their labels."""

    low: float
    high: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]


def render_report(
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    best_step: int | None = None,
    best_metric: str | None = None,
    higher_is_better: bool = True,
    class_names: Sequence[str] | None = None,
    confusion_matrix: Sequence[Sequence[int]] | None = None,
) -> str:
    """Renders the evaluation report as a complete, self-contained HTML5 document.

    Args:
        records: The per-checkpoint eval records, in any order: mappings with `step` (int),
            `checkpoint` (str) and `metrics` (metric name -> number; nested mappings are flattened
            to `outer/inner`; NaN and ±inf are shown as text and left out of the charts), and
            optionally `time` (unix seconds) and `duration` (seconds). Other keys are ignored.
        title: The page title and heading.
        best_step: The step of the best checkpoint; it must be one of the records' steps. When
            None and `best_metric` is given, the best finite value of `best_metric` picks it (the
            earliest step on ties).
        best_metric: The metric that ranks checkpoints; it must be one of the records' metrics.
        higher_is_better: Whether a higher `best_metric` is better.
        class_names: The class names, in label order, for the confusion matrix.
        confusion_matrix: A square matrix of non-negative counts, rows the true class and columns
            the predicted class. Drawn when given; without `class_names` the classes are numbered.

    Returns:
        The HTML document, as text.

    Raises:
        ValueError: If an input is malformed; the message names the input and the value.
    """
    if not isinstance(title, str):
        raise ValueError(f"`title` must be a string, got {title!r}.")
    rows = _check_records(records)
    names = _metric_names(rows)
    best = _resolve_best(rows, names, best_step, best_metric, higher_is_better)
    parts = [
        _header_html(title, rows, best, best_metric, higher_is_better),
        _charts_html(rows, names, best),
        _table_html(rows, names, best, best_metric),
    ]
    if confusion_matrix is not None:
        parts.append(_confusion_html(class_names, confusion_matrix))
    body = "\n".join(part for part in parts if part)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _check_records(records: Any) -> list[_Row]:
    """Checks the records and returns them sorted by step.

    Raises:
        ValueError: On a malformed record or a step that appears twice.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValueError(f"`records` must be a sequence of record mappings, got {type(records).__name__}.")
    rows = [_check_record(i, record) for i, record in enumerate(records)]
    rows.sort(key=lambda row: row.step)
    for previous, row in itertools.pairwise(rows):
        if previous.step == row.step:
            raise ValueError(
                f"`records` hold step {row.step} twice (checkpoints {previous.checkpoint!r} and "
                f"{row.checkpoint!r}); each evaluated checkpoint must appear once."
            )
    return rows


def _check_record(index: int, record: Any) -> _Row:
    """Checks one record and flattens its metrics."""
    where = f"records[{index}]"
    if not isinstance(record, Mapping):
        raise ValueError(f"`{where}` must be a mapping, got {record!r}.")
    for key in ("step", "checkpoint", "metrics"):
        if key not in record:
            raise ValueError(f"`{where}` has no {key!r} (keys: {sorted(map(str, record))}).")
    step = record["step"]
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f"`{where}['step']` must be an integer, got {step!r}.")
    checkpoint = record["checkpoint"]
    if not isinstance(checkpoint, str):
        raise ValueError(f"`{where}['checkpoint']` must be a string, got {checkpoint!r}.")
    metrics = record["metrics"]
    if not isinstance(metrics, Mapping):
        raise ValueError(f"`{where}['metrics']` must be a mapping of metric name to number, got {metrics!r}.")
    flat = list(_flatten_metrics(metrics, f"{where}['metrics']"))
    return _Row(
        step=int(step),
        checkpoint=checkpoint,
        metrics={name: _as_number(value) for name, value in flat if _is_number(value)},
        other=tuple(name for name, value in flat if not _is_number(value)),
        time=_optional_finite(record.get("time"), f"{where}['time']"),
        duration=_optional_finite(record.get("duration"), f"{where}['duration']"),
    )


def _flatten_metrics(metrics: Mapping[Any, Any], where: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yields (name, value) pairs; nested mappings become `outer/inner` names.

    Raises:
        ValueError: On a name made twice (e.g. `a/b` next to `a: {b: ...}`).
    """
    seen: set[str] = set()
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            pairs = list(_flatten_metrics(value, where, f"{name}/"))
        else:
            pairs = [(name, value)]
        for flat_name, flat_value in pairs:
            if flat_name in seen:
                raise ValueError(f"`{where}` names metric {flat_name!r} twice once nested names are flattened.")
            seen.add(flat_name)
            yield flat_name, flat_value


def _is_number(value: Any) -> bool:
    """Whether a value is one real number (NaN and ±inf included; bools are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_number(value: Any) -> int | float:
    """An integer as a Python int, any other real number as a float."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _check_number(value: Any, where: str) -> int | float:
    """Checks one real number and returns it as `_as_number` does.

    Raises:
        ValueError: If `value` is not a real number.
    """
    if not _is_number(value):
        raise ValueError(f"`{where}` must be a number, got {value!r}.")
    return _as_number(value)


def _optional_finite(value: Any, where: str) -> float | None:
    """Checks an optional finite number (a time or a duration)."""
    if value is None:
        return None
    number = _check_number(value, where)
    if not math.isfinite(number):
        raise ValueError(f"`{where}` must be a finite number, got {value!r}.")
    return float(number)


def _metric_names(rows: Sequence[_Row]) -> list[str]:
    """Every metric name, in the order the records (by step) first name them."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.metrics))
    return list(names)


def _resolve_best(
    rows: Sequence[_Row],
    names: Sequence[str],
    best_step: Any,
    best_metric: Any,
    higher_is_better: Any,
) -> int | None:
    """Returns the best step: the given one (checked), the best finite `best_metric` value, or None.

    Raises:
        ValueError: If `best_step` is not a recorded step or `best_metric` not a recorded metric.
    """
    if not isinstance(higher_is_better, bool):
        raise ValueError(f"`higher_is_better` must be a bool, got {higher_is_better!r}.")
    if best_metric is not None and (not isinstance(best_metric, str) or best_metric not in names):
        raise ValueError(f"`best_metric` must be one of the recorded metrics {names}, got {best_metric!r}.")
    if best_step is not None:
        steps = [row.step for row in rows]
        if isinstance(best_step, bool) or not isinstance(best_step, numbers.Integral) or best_step not in steps:
            raise ValueError(f"`best_step` must be one of the recorded steps {steps}, got {best_step!r}.")
        return int(best_step)
    if best_metric is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    candidates = [
        (-sign * float(row.metrics[best_metric]), row.step)
        for row in rows
        if best_metric in row.metrics and math.isfinite(row.metrics[best_metric])
    ]
    return min(candidates)[1] if candidates else None


# --------------------------------------------------------------------------------------------- output


def _esc(text: Any) -> str:
    """HTML-escapes text for element content and quoted attribute values."""
    return html.escape(str(text), quote=True)


def _format_value(value: int | float, decimals: int | None = None) -> str:
    """A metric value as text: integers as they are, NaN/inf named, floats to 6 significant digits.

    With `decimals`, a finite float gets exactly that many decimals (a table column lines up).
    """
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
    decimals = 0
    for value in values:
        if not isinstance(value, float) or not math.isfinite(value):
            continue
        text = f"{value:.6g}"
        if "e" in text:
            return None
        decimals = max(decimals, len(text.partition(".")[2]))
    return decimals


def _format_time(seconds: float) -> str:
    """Unix seconds as a UTC timestamp (the same text wherever the report is rendered)."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _common_directory(rows: Sequence[_Row]) -> str | None:
    """The directory all checkpoints share, if they share one (then the table shows base names)."""
    directories = {posixpath.dirname(row.checkpoint.rstrip("/")) for row in rows}
    if len(directories) == 1:
        (directory,) = directories
        return directory or None
    return None


def _header_html(
    title: str, rows: Sequence[_Row], best: int | None, best_metric: str | None, higher_is_better: bool
) -> str:
    """The heading and the summary boxes."""
    items = [("Checkpoints evaluated", str(len(rows)))]
    if rows:
        first, last = rows[0].step, rows[-1].step
        items.append(("Steps", str(first) if first == last else f"{first} \u2013 {last}"))
    items.append(("Best step", _MISSING if best is None else str(best)))
    if best_metric is not None:
        value = _best_value(rows, best, best_metric)
        direction = "higher is better" if higher_is_better else "lower is better"
        items.append((f"Best {best_metric} ({direction})", value))
    boxes = "".join(f"<div><dt>{_esc(name)}</dt><dd>{_esc(value)}</dd></div>" for name, value in items)
    parts = [f"<header>\n<h1>{_esc(title)}</h1>\n<dl class=\"summary\">{boxes}</dl>"]
    if best is not None:
        checkpoint = next(row.checkpoint for row in rows if row.step == best)
        parts.append(f'<p class="source">Best checkpoint: {_esc(checkpoint)}</p>')
    if not rows:
        parts.append('<p class="note">No checkpoints were evaluated.</p>')
    parts.append("</header>")
    return "\n".join(parts)


def _best_value(rows: Sequence[_Row], best: int | None, best_metric: str) -> str:
    """The best checkpoint's `best_metric` value as text, or a dash."""
    if best is None:
        return _MISSING
    metrics = next(row.metrics for row in rows if row.step == best)
    return _format_value(metrics[best_metric]) if best_metric in metrics else _MISSING


@dataclasses.dataclass(frozen=True)
class _Columns:
    """The checkpoints table's columns: metric names, their decimals, and the optional columns."""

    names: Sequence[str]
    decimals: Mapping[str, int | None]
    with_time: bool
    with_duration: bool
    directory: str | None  # Shared checkpoint directory: the table then shows base names.

    @classmethod
    def of(cls, rows: Sequence[_Row], names: Sequence[str]) -> _Columns:
        """The columns that `rows` need."""
        return cls(
            names=names,
            decimals={name: _column_decimals([row.metrics.get(name) for row in rows]) for name in names},
            with_time=any(row.time is not None for row in rows),
            with_duration=any(row.duration is not None for row in rows),
            directory=_common_directory(rows),
        )


def _table_html(rows: Sequence[_Row], names: Sequence[str], best: int | None, best_metric: str | None) -> str:
    """The table of every evaluated checkpoint; the best row has class `best` and a star."""
    if not rows:
        return ""
    columns = _Columns.of(rows, names)
    body = "\n".join(_table_row(row, columns, is_best=row.step == best) for row in rows)
    parts = [
        "<section>\n<h2>Evaluated checkpoints</h2>",
        f'<div class="table-wrap"><table class="records">\n<thead>{_table_head(columns, best_metric)}</thead>',
        f"<tbody>\n{body}\n</tbody>\n</table></div>",
        *_table_notes(rows, columns),
        "</section>",
    ]
    return "\n".join(parts)


def _table_head(columns: _Columns, best_metric: str | None) -> str:
    """The header row; the column of `best_metric` is marked."""
    head = ['<th class="mark" aria-label="best"></th>', '<th class="num">Step</th>']
    for name in columns.names:
        if name == best_metric:
            head.append(f'<th class="num key" title="ranks the checkpoints">{_esc(name)}</th>')
        else:
            head.append(f'<th class="num">{_esc(name)}</th>')
    head += ["<th>Evaluated</th>"] if columns.with_time else []
    head += ['<th class="num">Duration</th>'] if columns.with_duration else []
    head.append("<th>Checkpoint</th>")
    return f"<tr>{''.join(head)}</tr>"


def _table_notes(rows: Sequence[_Row], columns: _Columns) -> list[str]:
    """Notes under the table: the shared checkpoint directory, non-finite and left-out values."""
    notes = []
    if columns.directory is not None:
        notes.append(f'<p class="source">Checkpoints in {_esc(columns.directory)}</p>')
    if any(not math.isfinite(v) for row in rows for v in row.metrics.values()):
        notes.append('<p class="note">Non-finite values (NaN, inf) are shown as text and left out of the charts.</p>')
    other = list(dict.fromkeys(name for row in rows for name in row.other))
    if other:
        notes.append(f'<p class="note">Not shown, as they are not single numbers: {_esc(", ".join(other))}.</p>')
    return notes


def _table_row(row: _Row, columns: _Columns, *, is_best: bool) -> str:
    """One `<tr>` of the checkpoints table."""
    cells = [f'<td class="mark">{_STAR if is_best else ""}</td>', f'<td class="num">{row.step}</td>']
    for name in columns.names:
        cells.append(_value_cell(row.metrics.get(name), columns.decimals[name]))
    if columns.with_time:
        cells.append(f"<td>{_MISSING if row.time is None else _format_time(row.time)}</td>")
    if columns.with_duration:
        text = _MISSING if row.duration is None else f"{row.duration:.1f} s"
        cells.append(f'<td class="num">{text}</td>')
    directory = columns.directory
    shown = posixpath.basename(row.checkpoint.rstrip("/")) if directory is not None else row.checkpoint
    cells.append(f'<td class="path">{_esc(shown)}</td>')
    attributes = ' class="best"' if is_best else ""
    return f'<tr{attributes} data-step="{row.step}">{"".join(cells)}</tr>'


def _value_cell(value: int | float | None, decimals: int | None) -> str:
    """A metric value's `<td>`: the number, `NaN`/`inf` (class `nonfinite`), or a dash when missing."""
    if value is None:
        return f'<td class="num missing">{_MISSING}</td>'
    css = "num" if math.isfinite(value) else "num nonfinite"
    return f'<td class="{css}">{_esc(_format_value(value, decimals))}</td>'


# --------------------------------------------------------------------------------------------- charts


def _charts_html(rows: Sequence[_Row], names: Sequence[str], best: int | None) -> str:
    """One chart per metric, in a responsive grid."""
    if not rows or not names:
        return ""
    charts = [_chart_html(name, rows, best) for name in names]
    return (
        '<section>\n<h2>Metrics over training steps</h2>\n<div class="charts">\n'
        + "\n".join(charts)
        + "\n</div>\n</section>"
    )


def _chart_html(name: str, rows: Sequence[_Row], best: int | None) -> str:
    """A `<figure class="chart" data-metric=...>` with the metric's SVG line chart and its notes."""
    points = [(row.step, float(row.metrics[name])) for row in rows if name in row.metrics]
    finite = [(step, value) for step, value in points if math.isfinite(value)]
    skipped = [(step, value) for step, value in points if not math.isfinite(value)]
    caption = _esc(name)
    if finite:
        last_step, last_value = finite[-1]
        caption += f' <span class="muted">\u00b7 last {_esc(_format_value(last_value))} at step {last_step}</span>'
    parts = [f'<figure class="chart" data-metric="{_esc(name)}">', f"<figcaption>{caption}</figcaption>"]
    parts.append(_chart_svg(name, finite, best))
    if skipped:
        listed = ", ".join(f"step {step} ({_format_value(value)})" for step, value in skipped)
        parts.append(f'<p class="note">Not plotted (non-finite): {_esc(listed)}.</p>')
    parts.append("</figure>")
    return "\n".join(parts)


def _chart_svg(name: str, points: Sequence[tuple[int, float]], best: int | None) -> str:
    """The inline SVG: grid, axes with tick labels, the line, one `<circle>` per point (best highlighted)."""
    label = _esc(f"{name} over training steps")
    open_tag = (
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{label}">'
    )
    if not points:
        message = f'<text x="{_WIDTH // 2}" y="{_HEIGHT // 2}" text-anchor="middle">No finite values to plot</text>'
        return f"{open_tag}{message}</svg>"
    x_axis = _axis([float(step) for step, _ in points], integer=True, target=6)
    y_axis = _axis([value for _, value in points], integer=False, target=5)
    x_of = _scale(x_axis, _LEFT, _WIDTH - _RIGHT)
    y_of = _scale(y_axis, _HEIGHT - _BOTTOM, _TOP)
    parts = [open_tag, _grid_svg(x_axis, y_axis, x_of, y_of)]
    if best is not None and x_axis.low <= best <= x_axis.high:
        x = x_of(best)
        parts.append(
            f'<line class="best-marker" x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_HEIGHT - _BOTTOM}" '
            f'stroke="{BEST_COLOR}" stroke-width="1" stroke-dasharray="4 3"/>'
        )
    coordinates = " ".join(f"{x_of(step):.1f},{y_of(value):.1f}" for step, value in points)
    parts.append(
        f'<polyline class="series" points="{coordinates}" fill="none" stroke="{LINE_COLOR}" '
        'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
    )
    radius = 3.5 if len(points) <= 60 else 2.0
    for step, value in points:
        at = (x_of(step), y_of(value))
        parts.append(_point_svg(name, step, value, at=at, radius=radius, is_best=step == best))
    parts.append("</svg>")
    return "".join(parts)


def _point_svg(
    name: str, step: int, value: float, *, at: tuple[float, float], radius: float, is_best: bool
) -> str:
    """One data point (a `<circle>` centred `at` x, y), with a `<title>` for hover text."""
    x, y = at
    text = f"step {step}: {name} = {_format_value(value)}"
    if is_best:
        return (
            f'<circle class="point best" cx="{x:.1f}" cy="{y:.1f}" r="{radius + 2.5:.1f}" fill="{BEST_COLOR}" '
            f'stroke="#fff" stroke-width="1.5"><title>{_esc(text)} ({_STAR} best)</title></circle>'
        )
    return (
        f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{LINE_COLOR}" '
        f'stroke="#fff" stroke-width="1"><title>{_esc(text)}</title></circle>'
    )


def _grid_svg(x_axis: _Axis, y_axis: _Axis, x_of: Callable[[float], float], y_of: Callable[[float], float]) -> str:
    """Horizontal grid lines, the two axis lines, tick marks and tick labels."""
    left, right, bottom = _LEFT, _WIDTH - _RIGHT, _HEIGHT - _BOTTOM
    parts = []
    for tick, text in zip(y_axis.ticks, y_axis.labels, strict=True):
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e5e7eb" stroke-width="1"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_esc(text)}</text>')
    for tick, text in zip(x_axis.ticks, x_axis.labels, strict=True):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#9ca3af"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{_esc(text)}</text>')
    parts.append(f'<line x1="{left}" y1="{_TOP}" x2="{left}" y2="{bottom}" stroke="#9ca3af" stroke-width="1"/>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#9ca3af" stroke-width="1"/>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{_HEIGHT - 6}" text-anchor="middle">step</text>')
    return "".join(parts)


def _scale(axis: _Axis, start: float, end: float) -> Callable[[float], float]:
    """Maps the axis domain linearly onto [start, end] (pixels).

    Halves are subtracted, so domains near the float limits do not overflow to inf.
    """
    low, span = axis.low / 2, axis.high / 2 - axis.low / 2
    return lambda value: start + (float(value) / 2 - low) / span * (end - start)


def _axis(values: Sequence[float], *, integer: bool, target: int) -> _Axis:
    """A 'nice' axis covering `values`: about `target` ticks at 1, 2 or 5 times a power of ten."""
    low, high = min(values), max(values)
    if low == high:
        pad = 1.0 if integer or low == 0 else abs(low) * 0.1
        low, high = low - pad, high + pad
    if not math.isfinite(high - low):  # Values near the float limits: just the two ends.
        return _Axis(low, high, (low, high), (f"{low:.3g}", f"{high:.3g}"))
    step, exponent = _nice_step((high - low) / target)
    if integer and step < 1:
        step, exponent = 1.0, 0
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    ticks = tuple(k * step for k in range(first, last + 1))
    decimals = max(0, -exponent)
    return _Axis(first * step, last * step, ticks, tuple(_tick_label(t, decimals) for t in ticks))


def _nice_step(raw: float) -> tuple[float, int]:
    """The smallest of 1, 2, 5 times a power of ten that is at least `raw`, and that power."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1, 2, 5):
        if mantissa * 10.0**exponent >= raw * (1 - 1e-12):
            return mantissa * 10.0**exponent, exponent
    return 10.0 ** (exponent + 1), exponent + 1


def _tick_label(value: float, decimals: int) -> str:
    """A tick label: fixed decimals, or 3 significant digits for very large or very small scales."""
    if decimals > 6 or abs(value) >= 1e7:
        text = f"{value:.3g}"
    else:
        text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


# ----------------------------------------------------------------------------------- confusion matrix


def _confusion_html(class_names: Sequence[str] | None, matrix: Sequence[Sequence[int]]) -> str:
    """The confusion matrix as a table, each cell shaded by its count (inline styles)."""
    counts = _check_matrix(matrix)
    names = _check_class_names(class_names, len(counts))
    peak = max((value for row in counts for value in row), default=0)
    head = '<th class="corner">true \\ predicted</th>' + "".join(f'<th class="num">{_esc(n)}</th>' for n in names)
    body = []
    for true_name, row in zip(names, counts, strict=True):
        total = sum(row)
        cells = [
            _confusion_cell(true_name, predicted, value, total, peak)
            for predicted, value in zip(names, row, strict=True)
        ]
        body.append(f'<tr><th scope="row">{_esc(true_name)}</th>{"".join(cells)}</tr>')
    return (
        "<section>\n<h2>Confusion matrix</h2>\n"
        f'<div class="table-wrap" style="display:inline-block;max-width:100%"><table class="cm">\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table></div>\n"
        '<p class="source">Rows: true class; columns: predicted class; shading: count.</p>\n</section>'
    )


def _confusion_cell(true_name: str, predicted: str, value: int, total: int, peak: int) -> str:
    """One shaded count cell, with hover text giving the share of the true class."""
    share = f"{100.0 * value / total:.1f}%" if total else "0.0%"
    fraction = value / peak if peak else 0.0
    background = _mix("#ffffff", LINE_COLOR, 0.85 * fraction)
    color = "#ffffff" if fraction > 0.55 else "#1f2937"
    tip = _esc(f"true {true_name}, predicted {predicted}: {value} ({share} of {true_name})")
    return f'<td style="background-color:{background};color:{color}" title="{tip}">{value}</td>'


def _mix(start: str, end: str, fraction: float) -> str:
    """The colour `fraction` of the way from `start` to `end` (both `#rrggbb`)."""
    channels = []
    for i in (1, 3, 5):
        a, b = int(start[i : i + 2], 16), int(end[i : i + 2], 16)
        channels.append(round(a + (b - a) * fraction))
    return "#" + "".join(f"{c:02x}" for c in channels)


def _check_matrix(matrix: Any) -> list[list[int]]:
    """Checks a square matrix of non-negative integer counts (lists, or an array with `tolist()`)."""
    if hasattr(matrix, "tolist"):  # A NumPy array, without importing NumPy.
        matrix = matrix.tolist()
    if isinstance(matrix, (str, bytes)) or not isinstance(matrix, Sequence) or not matrix:
        raise ValueError(f"`confusion_matrix` must be a non-empty square list of count rows, got {matrix!r}.")
    size = len(matrix)
    counts = []
    for i, row in enumerate(matrix):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != size:
            raise ValueError(f"`confusion_matrix[{i}]` must be a row of {size} counts, got {row!r}.")
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"`confusion_matrix[{i}][{j}]` must be a non-negative integer, got {value!r}.")
        counts.append([int(value) for value in row])
    return counts


def _check_class_names(class_names: Any, size: int) -> list[str]:
    """Checks the class names against the matrix size; numbers the classes when there are none."""
    if class_names is None:
        return [str(i) for i in range(size)]
    if hasattr(class_names, "tolist"):
        class_names = class_names.tolist()
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ValueError(f"`class_names` must be a sequence of strings, got {class_names!r}.")
    names = [str(name) for name in class_names]
    if len(names) != size:
        raise ValueError(
            f"`class_names` has {len(names)} names ({names!r}) but `confusion_matrix` is {size}x{size}."
        )
    return names
