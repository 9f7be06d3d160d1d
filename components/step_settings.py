"""How a pipeline runs each step: caching and the retry policy, declared once for the packaged pipeline and for
users' own DAGs (`tfpipe.pipelines.dag.configure` applies them; the train and continuous-eval steps read
`RETRIES_ENV` to say "retrying (n/N)", `tfpipe.components.common.attempts`).

No kfp and no TensorFlow here.
"""

import dataclasses
from typing import Mapping, Optional

# The number of retries a step's policy allows, as the step sees it (set by `dag.configure` on the task).
RETRIES_ENV = "TFPIPE_RETRIES"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """KFP's `PipelineTask.set_retry` arguments.

    Attributes:
        num_retries: Retries after the first attempt.
        backoff_duration: The first wait, e.g. `30s`.
        backoff_factor: Each further wait is this many times the one before.
        backoff_max_duration: The longest wait.
    """

    num_retries: int
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0
    backoff_max_duration: str = "600s"


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What a pipeline sets on a step's task.

    Attributes:
        caching: KFP's execution caching for the step (None: KFP's default). Off for steps that read or write the
            run directory, whose content a cache cannot see.
        retry: The retry policy, or None for none (a step that only checks inputs fails once).
    """

    caching: Optional[bool] = None
    retry: Optional[RetryPolicy] = None


# train resumes from its latest checkpoint (a preemption costs a retry); continuous_eval skips what it recorded.
SETTINGS: Mapping[str, StepSettings] = {
    "model_dir": StepSettings(caching=False),
    "check_inputs": StepSettings(caching=False),
    "train": StepSettings(caching=False, retry=RetryPolicy(num_retries=3)),
    "continuous_eval": StepSettings(caching=False, retry=RetryPolicy(num_retries=2)),
}
