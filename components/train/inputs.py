"""The train component's inputs, declared once (`INTERFACE`; neither kfp nor TensorFlow: see docs/design.md)."""

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
