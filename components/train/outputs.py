"""What a train step reports, and how it becomes the step's KFP outputs (no TensorFlow: the TFJob launcher uses it).

Both the train component and the multi-worker launcher (`tfjob_train`) end with
`publish`, so a pipeline cannot tell which of the two trained the run.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional


@dataclasses.dataclass
class TrainResult:
    """What a train run leaves behind.

    Every worker of a multi-worker run reports the same values: the chief's
    checkpoint path in `model_dir` and the loop metrics reduced over all
    replicas. Only the chief (`is_chief`) should publish them (KFP outputs).
    """

    model_dir: str
    final_step: int
    checkpoint: Optional[str]
    metrics: Dict[str, float]
    is_chief: bool = True


def publish(result: TrainResult, *, model: Any, metrics: Any) -> tuple:
    """Fills a train step's KFP outputs from `result` (the chief's; other workers publish nothing).

    Args:
        result: What the run returned.
        model: The `Output[Model]` artifact: it points at `model_dir` (a `run.json` in it names the run).
        metrics: The `Output[Metrics]` artifact: the last train loop's finite scalars, and `step`.

    Returns:
        The step's output parameters `(final_step, checkpoint)`.
    """
    if result.is_chief:
        pointer = {"model_dir": result.model_dir, "final_step": result.final_step,
                   "checkpoint": result.checkpoint or ""}
        model.metadata.update({**pointer, "framework": "tensorflow"})
        os.makedirs(model.path, exist_ok=True)
        with open(os.path.join(model.path, "run.json"), "w") as f:
            json.dump(pointer, f)
        for name, value in sorted(result.metrics.items()):
            if math.isfinite(value):
                metrics.log_metric(name, value)
        metrics.log_metric("step", float(result.final_step))
    return result.final_step, result.checkpoint or ""
