"""The beats-baseline step: compares the best checkpoint with a model exported by tfpipe before."""

from kfp.dsl import Input, Metrics, Model


def beats_baseline(
    candidate: Input[Metrics],
    baseline: Input[Model],
    metric: str,
    mode: str,
    thresholds_passed: bool,
) -> bool:
    """Whether the candidate passed its thresholds and beats the baseline model's recorded `metric`.

    Args:
        candidate: The best checkpoint's Metrics (from continuous_eval).
        baseline: A model exported by tfpipe earlier (imported by URI); its commit marker holds the metrics it was
            exported with.
        metric: The metric to compare (empty: the best metric recorded in the candidate's metadata).
        mode: `higher` or `lower`: which values are better.
        thresholds_passed: continuous_eval's verdict on the thresholds.
    """
    from tfpipe.components.baseline import runtime as baseline_lib

    return baseline_lib.beats_baseline(dict(candidate.metadata), baseline.path, baseline.uri, metric=metric,
                                       mode=mode, thresholds_passed=thresholds_passed)
