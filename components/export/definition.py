"""The export component: its inputs and its KFP definition (the work is `tfpipe.components.export.runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model, Output

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


def export(
    task: str,
    model_dir: str,
    model: Output[Model],
    task_config: str = "{}",
    task_package: str = "",
    checkpoint: str = "auto",
    eval_name: str = "validation",
    thresholds: str = "{}",
    export_dir: str = "",
    allow_different_config: bool = False,
    precision: str = "float32",
    passed: bool = True,
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
    test_data: dsl.Input[dsl.Dataset] = None,
) -> NamedTuple("ExportOutputs", [("step", int), ("export_path", str), ("exported", bool)]):
    """Exports a checkpoint of `model_dir` as a SavedModel with the task's serving signature.

    Also outputs the parameters `step`, `export_path` and `exported` (false when `passed` is false: nothing was
    exported, `step` is -1). (`Args:` are added from `INTERFACE`.)
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components.export import runtime as export_lib

    return export_lib.run_for_kfp(**inputs)


INTERFACE.document(export, outputs={
    "model": "The SavedModel (metadata: exported, step, checkpoint, checkpoint_fingerprint, metrics, signatures, "
             "export_path); empty, with metadata exported=false, when `passed` is false.",
})
