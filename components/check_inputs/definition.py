"""The check-inputs step: every input a pipeline run was given, checked once, fast, before anything runs.

KFP retries a failed step with backoff; an input that can never work (an unknown
task, a bad task config, a metric name the task lacks) must fail once, not after
minutes of retries. This step has no retries and runs before train and
continuous_eval: it builds the task (installing `task_package` first), checks the
config against a run directory that was trained before, and the best metric and
threshold names against the task's metrics.
"""

from typing import NamedTuple

from kfp import dsl

from tfpipe.components.check_inputs.inputs import INTERFACE


def check_inputs(
    task: str,
    model_dir: str,
    task_config: str = "{}",
    task_package: str = "",
    best_metric: str = "",
    best_mode: str = "",
    thresholds: str = "{}",
    precision: str = "float32",
    jit_compile: bool = False,
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
) -> NamedTuple("CheckedInputs", [("best_metric", str), ("best_mode", str)]):
    """Checks a run's inputs against the task before anything runs; outputs the effective best metric and mode.

    (`Args:` are added from `INTERFACE`.)
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components.check_inputs import runtime as check_inputs_lib

    return check_inputs_lib.run(**inputs)


INTERFACE.document(check_inputs, outputs={})
