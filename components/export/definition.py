"""The export component's KFP function (its inputs: `inputs.INTERFACE`; its work: `runtime.run`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model, Output

from tfpipe.components.export.inputs import INTERFACE


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
