"""The evaluation report's page: a Jinja2 template (rendered with autoescaping) and its inline CSS.

`tfpipe.components.common.report` fills it: every value it passes is text that the template escapes, except the
charts' SVG, which matplotlib wrote and the report marks safe. The page loads nothing: no scripts, fonts,
stylesheets or images from elsewhere (KFP and Vertex AI show it in a sandboxed iframe).
"""

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
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
.note { color: #92400e; font-size: 12px; margin: 6px 0 0; overflow-wrap: anywhere; }
.source { color: #6b7280; font-size: 12px; margin: 10px 0 0; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; margin-top: 10px; }
.chart { margin: 0; background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 12px; }
.chart figcaption { font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
.chart svg { display: block; width: 100%; height: auto; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.records { width: 100%; }
.records th:last-child, .records td.path { width: 100%; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eef0f3; text-align: left; white-space: nowrap; }
thead th { background: #f3f4f6; font-weight: 600; font-size: 12px; color: #374151; }
th.num, td.num { text-align: right; }
td.path { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12px; color: #4b5563; }
.mark { color: #b45309; width: 1.5em; padding-right: 0; }
tr.best td { background: #fff7e6; font-weight: 600; }
td.nonfinite { color: #b91c1c; }
td.missing { color: #9ca3af; }
th.key { text-decoration: underline dotted #6b7280; text-underline-offset: 3px; }
.cm-wrap { display: inline-block; max-width: 100%; }
table.cm td { text-align: right; min-width: 56px; }
table.cm th[scope=row] { font-weight: 600; }
table.cm .corner { font-weight: 400; color: #6b7280; }
</style>
</head>
<body>
<main>
<header>
<h1>{{ title }}</h1>
<dl class="summary">
{%- for label, value in facts %}<div><dt>{{ label }}</dt><dd>{{ value }}</dd></div>{% endfor -%}
</dl>
{% if best_checkpoint is not none %}<p class="source">Best checkpoint: {{ best_checkpoint }}</p>
{% endif %}
{% if table is none %}<p class="note">No checkpoints were evaluated.</p>
{% endif %}
</header>
{% if charts or chart_notes %}
<section>
<h2>Metrics over training steps</h2>
{% for note in chart_notes %}<p class="note">{{ note }}</p>
{% endfor %}
{% if charts %}
<div class="charts">
{% for chart in charts %}
<figure class="chart" data-metric="{{ chart.name }}">
<figcaption>{{ chart.name }}{% if chart.detail %} <span class="muted">\u00b7 {{ chart.detail }}</span>{% endif %}</figcaption>
{{ chart.svg }}
{% for note in chart.notes %}<p class="note">{{ note }}</p>
{% endfor %}
</figure>
{% endfor %}
</div>
{% endif %}
</section>
{% endif %}
{% if table is not none %}
<section>
<h2>Evaluated checkpoints</h2>
<div class="table-wrap"><table class="records">
<thead><tr>
{%- for cell in table.head %}<th class="{{ cell.css }}"{% if cell.tip %} title="{{ cell.tip }}"{% endif %}>{{ cell.text }}</th>{% endfor -%}
</tr></thead>
<tbody>
{% for row in table.rows %}
<tr{% if row.best %} class="best"{% endif %} data-step="{{ row.step }}">
{%- for cell in row.cells %}<td class="{{ cell.css }}">{{ cell.text }}</td>{% endfor -%}
</tr>
{% endfor %}
</tbody>
</table></div>
{% for note in table.notes %}<p class="{{ note.css }}">{{ note.text }}</p>
{% endfor %}
</section>
{% endif %}
{% if confusion is not none %}
<section>
<h2>Confusion matrix</h2>
<div class="table-wrap cm-wrap"><table class="cm">
<thead><tr><th class="corner">true \\ predicted</th>
{%- for name in confusion.names %}<th class="num">{{ name }}</th>{% endfor -%}
</tr></thead>
<tbody>
{% for true_name, cells in confusion.rows %}
<tr><th scope="row">{{ true_name }}</th>
{%- for cell in cells %}<td style="background-color:{{ cell.background }};color:{{ cell.color }}" \
title="{{ cell.tip }}">{{ cell.text }}</td>{% endfor -%}
</tr>
{% endfor %}
</tbody>
</table></div>
<p class="source">Rows: true class; columns: predicted class; shading: count.</p>
</section>
{% endif %}
</main>
</body>
</html>
"""
