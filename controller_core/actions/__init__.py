"""Actions: callables the `Controller` runs on each train loop's or evaluation's output.

An action is any `Callable[[Output], None]`. Pass them as `train_actions` or
`eval_actions`; combine a condition ("when") with actions ("what") through
`ConditionalAction`. Exporting a SavedModel each time the evaluation accuracy
improves, keeping the three best::

    import tfpipe.controller_core as orbit

    best = orbit.actions.NewBestMetric(
        "accuracy", higher_is_better=True, filename=f"{model_dir}/best_accuracy.json")
    files = orbit.actions.ExportFileManager(
        f"{model_dir}/best_exports/saved_model", max_to_keep=3,
        next_id_fn=global_step.numpy)
    export = orbit.actions.ExportSavedModel(model, files, signatures=serve_fn)
    controller = orbit.Controller(
        ...,
        eval_actions=[orbit.actions.ConditionalAction(
            condition=best.test, action=[export, best.commit])])

`best.commit` runs after the export, so a failed export does not advance the
best value.
"""

from tfpipe.controller_core.actions.conditional_action import ConditionalAction
from tfpipe.controller_core.actions.export_saved_model import ExportFileManager
from tfpipe.controller_core.actions.export_saved_model import ExportSavedModel
from tfpipe.controller_core.actions.new_best_metric import JSONPersistedValue
from tfpipe.controller_core.actions.new_best_metric import NewBestMetric
from tfpipe.controller_core.actions.periodic_action import PeriodicAction
from tfpipe.controller_core.actions.recover_from_divergence import DivergenceError
from tfpipe.controller_core.actions.recover_from_divergence import RecoverFromDivergence
from tfpipe.controller_core.actions.save_checkpoint_if_preempted import SaveCheckpointIfPreempted

__all__ = [
    "ConditionalAction",
    "ExportFileManager",
    "ExportSavedModel",
    "JSONPersistedValue",
    "NewBestMetric",
    "PeriodicAction",
    "RecoverFromDivergence",
    "DivergenceError",
    "SaveCheckpointIfPreempted",
]
