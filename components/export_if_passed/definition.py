"""Export, only when a gate passed: a graph component for the condition `passed == True`, with the model out.

The natural gate in a user's DAG, `with dsl.If(ce.outputs["passed"] == True):
export(...)`, runs on KFP and Vertex but never under `kfp.local` (kfp 2.17): the
local orchestrator resolves a condition's task-output channel
(`pipelinechannel--continuous-eval-passed`) only when the output is named `Output`
or the channel is an input of an enclosing sub-DAG, so it logs "Could not resolve
parent input" and skips the branch while the run reports success. Here the
condition is evaluated inside a graph component, where `passed` is an input, which
resolves everywhere. Use it as `export_if_passed(passed=ce.outputs["passed"], ...)`
(load it with `tfpipe.components.load_component("export_if_passed", image=...)`).

Its outputs are the exported `model` (a `Model`: the SavedModel, metadata
`exported`, `step`, `checkpoint`, `checkpoint_fingerprint`, `metrics`, ...) and
`exported` (bool), for a deploy or registration step of one's own. They come from
the export step, which always runs and exports only when `passed` is true (else its
`model` is empty and `exported` is false): kfp.local 2.17 cannot resolve a
`dsl.OneOf` output fed from a conditional branch ("Expected 1 artifact in
ArtifactSelectorSpec. Got: 2"), while an output of a step that always runs
resolves everywhere. Branch on `exported` inside a graph component of your own
(where it is an input) for the same kfp.local reason.

The packaged spec has no data inputs: under kfp.local a graph component's optional
artifact input that is left unconnected fails the run ("Parent pipeline input
argument ... not found"); `build(..., data_inputs=...)` builds one with them (the
packaged pipeline does so when it is given data), and export compares only the data
it is given with the run's.
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence

from kfp import dsl

from tfpipe import checks
from tfpipe.components.evaluate.inputs import INTERFACE as EVALUATE
from tfpipe.components.export.inputs import INTERFACE as EXPORT
from tfpipe.components.interface import Input, graph_function

NAME = "export-if-passed"
PASSED = Input("passed", bool, "The gate's verdict, e.g. continuous_eval's `passed` output; export only if true.",
               check=checks.check_bool)
FINAL_EVALUATE = Input("final_evaluate", bool, "Evaluate the exported checkpoint once more (records under "
                       "eval/final/).", default=False, check=checks.check_bool)
INPUTS = (PASSED, *(i for i in EXPORT.inputs if i.kfp and i.name != PASSED.name and not i.artifact), FINAL_EVALUATE)
DATA_INPUTS = tuple(i.name for i in EXPORT.inputs if i.artifact)
FINAL_OUTPUT_DIR = Input("final_output_dir", str, "The final evaluation's Vertex custom job `base_output_directory` "
                         "(its TensorBoard logs go under it).", default="")
Outputs = NamedTuple("ExportIfPassedOutputs", [("model", dsl.Model), ("exported", bool)])


def build(export_op: Any, evaluate_op: Any, *, configure: Optional[Callable[[Any, str], Any]] = None,
          register: Optional[Callable[[Any], Any]] = None, data_inputs: Sequence[str] = (),
          final_output_dir: bool = False) -> Any:
    """The `export-if-passed` graph component over the given export and evaluate components.

    Args:
        export_op: The export component (for the pipeline's image and backend).
        evaluate_op: The evaluate component, for `final_evaluate`.
        configure: `configure(task, step)` applies a backend's resources to a task (`step` is `export` or
            `eval`); none by default.
        register: `register(export_task)` adds steps that register the export (e.g. in Vertex AI Model Registry,
            `tfpipe.pipelines.vertex.model_registration`); none by default.
        data_inputs: Data inputs of export (`train_data`, `eval_data`, `test_data`) the graph takes as (optional)
            `Dataset` inputs and hands to export and the final evaluation; none by default (see above).
        final_output_dir: `evaluate_op` is a Vertex custom job: the graph takes `final_output_dir` and passes it
            as the final evaluation's `base_output_directory`.

    Returns:
        The `@dsl.pipeline` graph component; its outputs are `model` and `exported`.
    """
    configure = configure or (lambda task, step: task)
    unknown = sorted(set(data_inputs) - set(DATA_INPUTS))
    if unknown:
        raise ValueError(f"`data_inputs` {unknown} are not data inputs of export; they are {list(DATA_INPUTS)}.")
    inputs = (*INPUTS, *(EXPORT[name] for name in data_inputs))

    def body(p: dict) -> Outputs:
        data = {name: p[name] for name in data_inputs}
        # Always runs, exporting only when `passed`: its outputs are the graph's outputs (see above).
        exported = configure(export_op(**{i.name: p[i.name] for i in INPUTS if i.name in EXPORT.names(kfp_only=True)},
                                       **data), "export")
        exported.set_display_name("export")
        with dsl.If(p["passed"] == True, name="passed"):  # noqa: E712 (a KFP condition)
            if register is not None:
                register(exported)
            with dsl.If(p["final_evaluate"] == True, name="final-evaluate"):  # noqa: E712
                shared = {n: p[n] for n in ("task", "model_dir", "task_config", "task_package",
                                            "allow_different_config", "precision") if n in EVALUATE.names()}
                job = {"base_output_directory": p[FINAL_OUTPUT_DIR.name]} if final_output_dir else {}
                final = configure(evaluate_op(**shared, checkpoint="best", eval_name="final",
                                              best_eval_name=p["eval_name"], **job,
                                              **{n: v for n, v in data.items() if n in EVALUATE.names()}), "eval")
                final.set_display_name("evaluate-exported").after(exported)
        return Outputs(model=exported.outputs["model"], exported=exported.outputs["exported"])

    return dsl.pipeline(name=NAME)(graph_function(
        "export_if_passed", "Exports the chosen checkpoint when `passed` is true; optionally evaluates it again. "
        "Outputs the exported `model` and whether it was `exported`.",
        (*inputs, FINAL_OUTPUT_DIR) if final_output_dir else inputs, body, defaults={"checkpoint": "best"},
        returns=Outputs))


def packaged(components: Any) -> Any:
    """The packaged spec `export_if_passed.yaml`: `build` over the built components, without data inputs.

    Args:
        components: The built components (`kfp_components.components_for_image(...)`): their `export` and
            `evaluate`.
    """
    return build(components.export, components.evaluate)
