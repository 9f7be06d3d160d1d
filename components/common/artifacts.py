"""From evaluation records to what the KFP and Vertex UIs show: Metrics, ClassificationMetrics, HTML.

Names are stable and documented: the `Metrics` artifact holds every finite scalar
of the evaluation output under its output name (nested keys joined with `/`),
plus `step`, the evaluated checkpoint's step. NaN and infinite values are not
valid `Metrics` values: they appear in the HTML report as text instead.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tfpipe.components.common import report
from tfpipe.components.common import thresholds as thresholds_lib
from tfpipe.components.common import training_curves
from tfpipe.components.tasks.keras_runners import CONFUSION_MATRIX, ROC
from tfpipe.controller_core import eval_records
from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner

REPORT = "report.html"
STEP = "step"


def split_metrics(metrics: Mapping[str, Any]) -> Tuple[Dict[str, float], Optional[List[List[int]]]]:
    """Splits a record's metrics into scalar metrics (`a/b` names) and the confusion matrix, if any."""
    matrix = metrics.get(CONFUSION_MATRIX)
    scalars = run_dir.flatten_scalars({k: v for k, v in metrics.items() if k not in (CONFUSION_MATRIX, ROC)})
    return scalars, matrix


def kfp_metrics(record: Mapping[str, Any]) -> Dict[str, float]:
    """The values for a KFP `Metrics` artifact: finite scalars of the record, and its step."""
    scalars, _ = split_metrics(record["metrics"])
    values = {name: value for name, value in scalars.items() if eval_records.is_finite_number(value)}
    values[STEP] = float(record["step"])
    return values


def log_to_kfp(
    record: Mapping[str, Any],
    *,
    metrics: Any = None,
    classification_metrics: Any = None,
    class_names: Optional[Sequence[str]] = None,
) -> None:
    """Fills KFP `Metrics` / `ClassificationMetrics` output artifacts from one record.

    Args:
        record: An evaluation record.
        metrics: A `dsl.Metrics` output artifact, or None.
        classification_metrics: A `dsl.ClassificationMetrics` output artifact, or None.
        class_names: The task's class names (for the confusion matrix).
    """
    if metrics is not None:
        for name, value in sorted(kfp_metrics(record).items()):
            metrics.log_metric(name, value)
    _, matrix = split_metrics(record["metrics"])
    if classification_metrics is not None and matrix and class_names:
        classification_metrics.log_confusion_matrix(list(class_names), [[int(v) for v in row] for row in matrix])
    roc = record["metrics"].get(ROC)
    if classification_metrics is not None and roc:
        classification_metrics.log_roc_curve(
            [float(v) for v in roc["fpr"]], [float(v) for v in roc["tpr"]], [float(v) for v in roc["thresholds"]])


def render(
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    best: Optional[Mapping[str, Any]] = None,
    class_names: Optional[Sequence[str]] = None,
    train_curves: Optional[Mapping[str, Sequence[Tuple[int, float]]]] = None,
    thresholds: Optional[Mapping[str, Tuple[str, float]]] = None,
) -> str:
    """Renders the HTML report of `records` (every evaluated checkpoint), marking `best`.

    With `thresholds` (parsed, `{metric: (op, bound)}`) the header says whether the best checkpoint passes them.

    `train_curves` (metric name -> (step, value) pairs) are drawn under the eval points of the same metric.
    """
    rows = [{**r, "metrics": split_metrics(r["metrics"])[0]} for r in records]
    shown = best or (records[-1] if records else None)
    matrix = split_metrics(shown["metrics"])[1] if shown else None
    return report.render_report(
        rows,
        title=title,
        best_step=int(best["step"]) if best else None,
        best_metric=best.get("best_metric") if best else None,
        higher_is_better=(best.get("best_mode", "higher") == "higher") if best else True,
        class_names=list(class_names) if class_names and matrix else None,
        confusion_matrix=matrix if class_names else None,
        train_curves=train_curves,
        gate=gate_text(best, thresholds) if thresholds is not None else None,
    )


def gate_text(best: Optional[Mapping[str, Any]], thresholds: Mapping[str, Tuple[str, float]]) -> str:
    """The export gate in words: `passed: accuracy >= 0.9`, `missed: accuracy = 0.8 is not >= 0.9`, or none."""
    if not thresholds:
        return "none: no thresholds"
    shown = ", ".join(f"{name} {op} {bound:g}" for name, (op, bound) in sorted(thresholds.items()))
    if best is None:
        return f"not yet judged ({shown})"
    missed = thresholds_lib.missed_thresholds(kfp_metrics(best), thresholds)
    return f"missed: {'; '.join(missed)}" if missed else f"passed: {shown}"


class ReportAction:
    """An eval action that rewrites the evaluator's HTML report after each evaluation.

    The report (every record so far, the best marked, a chart per metric with
    the training curve of the same metric under the eval points) goes to
    `<eval dir>/report.html` in the run directory and to each extra path (e.g.
    a KFP `HTML` artifact's path), each replaced atomically, so a UI or a
    retried step always finds a complete report. Records are read once each;
    the training curves come from the run's `train/` TensorBoard events, read
    from where the previous report left off.
    """

    def __init__(self, directory: str, *, title: str, class_names: Optional[Sequence[str]] = None,
                 extra_paths: Sequence[str] = (), thresholds: Optional[Mapping[str, Tuple[str, float]]] = None) -> None:
        """Initializes the action.

        Args:
            directory: The evaluator's directory (`eval/<eval_name>` in the run directory).
            title: The report's title.
            class_names: The task's class names, for the confusion matrix.
            extra_paths: More files to write the report to.
            thresholds: The export gate (parsed thresholds): the header says whether the best checkpoint passes.
        """
        self._thresholds = thresholds
        self._records = eval_records.EvalRecords(directory)
        self._directory = directory
        self._title = title
        self._class_names = class_names
        self._paths = [f"{directory}/{REPORT}", *extra_paths]
        self._cache: Dict[int, Dict[str, Any]] = {}
        self._curves = training_curves.TrainingCurves.for_eval_dir(directory)

    def records(self) -> List[Dict[str, Any]]:
        """Every record so far, ascending by step (new ones read from the run directory)."""
        for step in self._records.steps():
            if step not in self._cache:
                record = self._records.read(step)
                if record is not None:
                    self._cache[step] = record
        return [self._cache[s] for s in sorted(self._cache)]

    def __call__(self, output: runner.Output = None) -> None:
        records = self.records()
        names = dict.fromkeys(name for record in records for name in split_metrics(record["metrics"])[0])
        html = render(records, title=self._title, best=eval_records.read_best_record(self._directory),
                      class_names=self._class_names, train_curves=self._curves.read(list(names)),
                      thresholds=self._thresholds)
        for path in self._paths:
            run_dir.write_text_atomic(path, html)
