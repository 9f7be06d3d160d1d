"""Comparing a candidate with a baseline model exported by tfpipe earlier (the pipeline's `baseline_model_uri`)."""

import json
import os
from typing import Any, Mapping

from tfpipe import checks
from tfpipe.components.common import commits
from tfpipe.components.export.runtime import EXPORT_INFO


def beats_baseline(candidate: Mapping[str, Any], baseline_path: str, baseline_uri: str, *, metric: str, mode: str,
                   thresholds_passed: bool) -> bool:
    """Whether the candidate passed its thresholds and beats the baseline's recorded `metric` (strictly).

    Args:
        candidate: The candidate's metrics (continuous_eval's Metrics artifact metadata).
        baseline_path: The local path of the imported baseline model.
        baseline_uri: Its URI, for messages.
        metric: The metric to compare.
        mode: `higher` or `lower`.
        thresholds_passed: continuous_eval's verdict on the thresholds.

    Raises:
        checks.InputError: If the baseline is not a committed tfpipe export whose files match its marker's
            manifest, or either side lacks `metric`.
    """
    checks.check_metric_name("best_metric", metric)
    checks.check_choice("best_mode", mode, checks.BEST_MODES)
    info_path = os.path.join(baseline_path, EXPORT_INFO)
    if not os.path.exists(info_path):
        raise checks.InputError(
            f"`baseline_model_uri` ({baseline_uri}) is not a committed tfpipe export: it has no {EXPORT_INFO}.")
    problem = commits.verify(baseline_path, marker=EXPORT_INFO)
    if problem is not None:
        raise checks.InputError(
            f"`baseline_model_uri` ({baseline_uri}) is not the export its {EXPORT_INFO} describes: {problem}. "
            "Compare with a model exported (again) by this tfpipe, unchanged since.")
    with open(info_path) as f:
        recorded = json.load(f)["metrics"]
    if metric not in recorded or metric not in candidate:
        raise checks.InputError(
            f"metric {metric!r} is missing: the baseline has {sorted(recorded)}, the candidate has {sorted(candidate)}."
        )
    new, old = float(candidate[metric]), float(recorded[metric])
    better = new > old if mode == "higher" else new < old
    print(f"gate | {metric}: candidate {new:.6g} vs baseline {old:.6g} | better: {better} | thresholds: "
          f"{thresholds_passed}", flush=True)
    return bool(thresholds_passed and better)
