"""Export, only when a gate passed: a graph component for the condition `passed == True`.

The natural gate in a user's DAG, `with dsl.If(ce.outputs["passed"] == True):
export(...)`, runs on KFP and Vertex but never under `kfp.local` (kfp 2.17): the
local orchestrator resolves a condition's task-output channel
(`pipelinechannel--continuous-eval-passed`) only when the output is named `Output`
or the channel is an input of an enclosing sub-DAG, so it logs "Could not resolve
parent input" and skips the branch while the run reports success. Here the
condition is evaluated inside a graph component, where `passed` is an input, which
resolves everywhere. Use it as `export_if_passed(passed=ce.outputs["passed"], ...)`
(load it with `tfpipe.components.load_component("export_if_passed", image=...)`).
"""

from typing import Any, Callable, Optional

from kfp import dsl

from tfpipe import checks
from tfpipe.components.definitions.evaluate import INTERFACE as EVALUATE
from tfpipe.components.definitions.export import INTERFACE as EXPORT
from tfpipe.components.interface import Input, graph_function

NAME = "export-if-passed"
PASSED = Input("passed", bool, "The gate's verdict, e.g. continuous_eval's `passed` output; export only if true.",
               check=checks.check_bool)
FINAL_EVALUATE = Input("final_evaluate", bool, "Evaluate the exported checkpoint once more (records under "
                       "eval/final/).", default=False, check=checks.check_bool)
INPUTS = (PASSED, *(i for i in EXPORT.inputs if i.kfp), FINAL_EVALUATE)
FINAL_OUTPUT_DIR = Input("final_output_dir", str, "The final evaluation's Vertex custom job `base_output_directory` "
                         "(its TensorBoard logs go under it).", default="")


def build(export_op: Any, evaluate_op: Any, *, configure: Optional[Callable[[Any, str], Any]] = None,
          register: Optional[Callable[[Any], Any]] = None, final_output_dir: bool = False) -> Any:
    """The `export-if-passed` graph component over the given export and evaluate components.

    Args:
        export_op: The export component (for the pipeline's image and backend).
        evaluate_op: The evaluate component, for `final_evaluate`.
        configure: `configure(task, step)` applies a backend's resources to a task (`step` is `export` or
            `eval`); none by default.
        register: `register(export_task)` adds steps that register the export (e.g. in Vertex AI Model Registry,
            `tfpipe.pipelines.vertex.model_registration`); none by default.
        final_output_dir: `evaluate_op` is a Vertex custom job: the graph takes `final_output_dir` and passes it
            as the final evaluation's `base_output_directory`.

    Returns:
        The `@dsl.pipeline` graph component.
    """
    configure = configure or (lambda task, step: task)

    def body(p: dict) -> None:
        with dsl.If(p["passed"] == True, name="passed"):  # noqa: E712 (a KFP condition)
            exported = configure(export_op(**{i.name: p[i.name] for i in EXPORT.inputs if i.kfp}), "export")
            exported.set_display_name("export")
            if register is not None:
                register(exported)
            with dsl.If(p["final_evaluate"] == True, name="final-evaluate"):  # noqa: E712
                shared = {n: p[n] for n in ("task", "model_dir", "task_config", "task_package",
                                            "allow_different_config", "precision") if n in EVALUATE.names()}
                job = {"base_output_directory": p[FINAL_OUTPUT_DIR.name]} if final_output_dir else {}
                final = configure(evaluate_op(**shared, checkpoint="best", eval_name="final",
                                              best_eval_name=p["eval_name"], **job), "eval")
                final.set_display_name("evaluate-exported").after(exported)

    return dsl.pipeline(name=NAME)(graph_function(
        "export_if_passed", "Exports the chosen checkpoint when `passed` is true; optionally evaluates it again.",
        (*INPUTS, FINAL_OUTPUT_DIR) if final_output_dir else INPUTS, body, defaults={"checkpoint": "best"}))
