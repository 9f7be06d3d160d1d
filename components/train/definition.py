"""The train component: its inputs and its KFP definition (the work is `tfpipe.components.train.runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from tfpipe import checks
from tfpipe.components.common import shared_inputs
from tfpipe.components.interface import Input, Interface, Relation

INTERFACE = Interface("train", (
    shared_inputs.TASK,
    shared_inputs.MODEL_DIR,
    Input("train_steps", int, "Global step to train up to.", check=checks.check_positive_int),
    shared_inputs.TASK_CONFIG,
    shared_inputs.TASK_PACKAGE,
    Input("steps_per_loop", int, "Steps per inner training loop (between logs, summaries and checks).",
          default=100, check=checks.check_loop_steps),
    Input("checkpoint_interval", int, "Save a checkpoint every this many steps.", default=100,
          check=checks.check_loop_steps),
    Input("max_to_keep", int, "Checkpoints to keep (the evaluator pins the best one apart).", default=5,
          check=checks.check_loop_steps),
    shared_inputs.DISTRIBUTION_STRATEGY,
    Input("enable_async_checkpointing", bool, "Save checkpoints in the background.", default=False,
          check=checks.check_bool),
    Input("deterministic", bool, "Op determinism, so that a resumed run matches an uninterrupted one.",
          default=True, check=checks.check_bool),
    Input("max_divergence_recoveries", int, "Rollbacks on a NaN, infinite or too large loss before failing.",
          default=3, check=checks.check_non_negative_int),
    Input("loss_upper_bound", float, "A larger finite loss counts as divergence (0: only NaN and infinity).",
          default=0.0, check=checks.check_non_negative_number),
    shared_inputs.PRECISION,
    shared_inputs.JIT_COMPILE,
    Input("profile_steps", str, "Trace these global steps, START-STOP such as '100-110', with the TensorFlow "
          "profiler into <model_dir>/train/ (TensorBoard's Profile tab); empty: no profiling.", default="",
          check=checks.check_step_range),
    *shared_inputs.DATA,
), relations=(Relation(("profile_steps", "train_steps"), checks.check_step_range_within),))


def train(
    task: str,
    model_dir: str,
    train_steps: int,
    model: Output[Model],
    metrics: Output[Metrics],
    task_config: str = "{}",
    task_package: str = "",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    distribution_strategy: str = "default",
    enable_async_checkpointing: bool = False,
    deterministic: bool = True,
    max_divergence_recoveries: int = 3,
    loss_upper_bound: float = 0.0,
    precision: str = "float32",
    jit_compile: bool = False,
    profile_steps: str = "",
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
) -> NamedTuple("TrainOutputs", [("final_step", int), ("checkpoint", str)]):
    """Trains `task` in `model_dir` up to `train_steps`, resuming from its latest checkpoint.

    Also outputs the parameters `final_step` and `checkpoint`. (`Args:` are added from `INTERFACE`.)
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components.train import runtime as train_lib

    return train_lib.run_for_kfp(**inputs)


# The artifact outputs' descriptions (the TFJob launcher, which has train's outputs, documents them alike).
OUTPUTS = {
    "model": "Points at model_dir (metadata: model_dir, final_step, checkpoint).",
    "metrics": "The last train loop's scalar metrics, and step.",
}
INTERFACE.document(train, outputs=OUTPUTS)
