"""The train component's KFP function (its inputs: `inputs.INTERFACE`; its work: `runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from tfpipe.components.train.inputs import INTERFACE


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
