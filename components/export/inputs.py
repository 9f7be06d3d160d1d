"""The export component's inputs, declared once (`INTERFACE`; neither kfp nor TensorFlow: see docs/design.md)."""

from tfpipe import checks
from tfpipe.components.common import shared_inputs
from tfpipe.components.interface import Input, Interface

INTERFACE = Interface("export", (
    shared_inputs.TASK,
    shared_inputs.MODEL_DIR,
    Input("output_path", str, "Where the SavedModel goes (entry point only; KFP gives the model artifact's path).",
          check=checks.check_uri, kfp=False, pipeline=False),
    shared_inputs.TASK_CONFIG,
    shared_inputs.TASK_PACKAGE,
    Input("checkpoint", str, "'auto' (best if pinned, else latest), 'best', 'latest', a step, or a path.",
          default="auto", check=checks.check_checkpoint_selector, pipeline=False),
    Input("eval_name", str, "The evaluator whose records and best checkpoint to use.", default="validation",
          check=checks.check_eval_name),
    shared_inputs.THRESHOLDS,
    Input("export_dir", str, "Also export to <export_dir>/<step>/ (e.g. gs://bucket/serving/model).", default="",
          check=checks.check_optional_uri),
    shared_inputs.ALLOW_DIFFERENT_CONFIG,
    shared_inputs.PRECISION,
    Input("passed", bool, "Export only if true (e.g. continuous_eval's `passed`); if false nothing is written, "
          "the model output is empty and `exported` is false.", default=True, check=checks.check_bool,
          pipeline=False),
    *shared_inputs.DATA,
    shared_inputs.TEST_DATA,
))
