"""The evaluation report's page as tests see it: charts (by metric) with their plotted series, table rows, notes.

Works on the report's own HTML and on Chromium's DOM dump of it (`tests.support.browser.dump_dom`)::

    page = parse(html)
    page.charts["loss"].series["eval"].points   # (x, y, style) of each evaluation point, in SVG units
    page.charts["loss"].series["train"].paths   # the training curve's path data; `vertices(d)` gives its points
"""

from __future__ import annotations

import dataclasses
import html.parser
import re


@dataclasses.dataclass
class Series:
    """One plotted series of a chart (the SVG group `chart<N>-<kind>`): its line paths and its points."""

    paths: list = dataclasses.field(default_factory=list)  # `d` attributes, marker definitions excluded.
    points: list = dataclasses.field(default_factory=list)  # (x, y, style) of each `<use>` (a marker).


@dataclasses.dataclass
class Chart:
    """What one `<figure class="chart">` holds."""

    svg: dict = dataclasses.field(default_factory=dict)
    series: dict = dataclasses.field(default_factory=dict)  # "eval" / "train" / "best" -> Series
    texts: list = dataclasses.field(default_factory=list)  # The SVG's <text> contents (ticks, labels, legend).
    notes: list = dataclasses.field(default_factory=list)


class ReportParser(html.parser.HTMLParser):
    """Collects the tags, charts (by data-metric), table rows and texts of a report or of Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.charts: dict[str, Chart] = {}
        self.rows: list[tuple[dict, list[str]]] = []
        self.cells: list[str] = []  # Texts of all td/th cells, in order.
        self.notes: list[str] = []  # Texts of all <p> outside charts.
        self.text: list[str] = []
        self._chart: Chart | None = None
        self._groups: list[str] = []  # Ids of the open <g> elements of the current chart.
        self._defs = 0
        self._capture: list[str] | None = None
        self._capture_tag = ""

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attributes = {name: value or "" for name, value in attrs}
        if tag == "figure" and "chart" in attributes.get("class", "").split():
            self._chart = self.charts.setdefault(attributes["data-metric"], Chart())
        elif self._chart is not None:
            self._chart_element(tag, attributes)
        elif tag == "tr" and "data-step" in attributes:
            self.rows.append((attributes, []))
        if tag in ("td", "th", "p", "text") and self._capture is None:
            self._capture, self._capture_tag = [], tag

    def _chart_element(self, tag, attributes):
        if tag == "svg":
            self._chart.svg = attributes
        elif tag == "g":
            self._groups.append(attributes.get("id", ""))
        elif tag == "defs":
            self._defs += 1
        elif tag in ("path", "use") and not self._defs:
            kind = next((g.split("-", 1)[1] for g in reversed(self._groups) if re.fullmatch(r"chart\d+-\w+", g)), None)
            if kind is not None:
                series = self._chart.series.setdefault(kind, Series())
                if tag == "path":
                    series.paths.append(attributes["d"])
                else:
                    series.points.append((float(attributes["x"]), float(attributes["y"]), attributes.get("style", "")))

    def handle_endtag(self, tag):
        if self._chart is not None and tag == "g" and self._groups:
            self._groups.pop()
        if self._chart is not None and tag == "defs":
            self._defs -= 1
        if tag == self._capture_tag and self._capture is not None:
            text = "".join(self._capture).strip()
            if tag in ("td", "th"):
                self.cells.append(text)
                if self.rows and tag == "td":
                    self.rows[-1][1].append(text)
            elif tag == "p":
                (self._chart.notes if self._chart is not None else self.notes).append(text)
            elif tag == "text" and self._chart is not None:
                self._chart.texts.append(text)
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


def vertices(d: str) -> list[tuple[float, float]]:
    """The vertices of an SVG path made of M/L commands (matplotlib's lines)."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    assert re.fullmatch(r"[\sML\d.e-]+", d), d
    return list(zip(numbers[::2], numbers[1::2]))
