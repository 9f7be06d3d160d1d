"""One declaration per component input: everything that spells an input out agrees with `INTERFACE`.

Each component's inputs are declared once (`tfpipe.components.<name>.inputs.INTERFACE`), and the components
once, in `tfpipe.components.registry` (every test here is parametrized over it). The entry points' flags, the
pipeline's parameters and a replica's argument list are derived from the declarations; the KFP component
functions' signatures, `run()`'s keywords and the rows of docs/inputs.md are written out and checked here, so an
input added or changed in one place only fails, naming the file to change.
"""

import inspect
import pathlib
import re

import pytest
from absl import flags
from kfp import dsl
from kfp.dsl.types import type_annotations

from tfpipe.components import definitions
from tfpipe.components import interface
from tfpipe.components import registry
from tfpipe.pipelines import local_run, train_eval_export

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMPONENTS = registry.names(registry.COMPONENT)
# Rows whose KFP function takes exactly its INTERFACE's inputs: the components and the steps that declare one.
DECLARED = [row.name for row in registry.ROWS if row.kind != registry.GRAPH and row.interface() is not None]
# run() keywords that are not component inputs: where the HTML report artifact goes.
RUN_ONLY = {"html_path"}


def _is_output(annotation) -> bool:
    return type_annotations.is_artifact_wrapped_in_Output(annotation)


def _expected_kfp_parameter(item):
    """The annotation and default of a declared input in a KFP function: an artifact input is `Input[X] = None`."""
    if item.artifact:
        return dsl.Input[getattr(dsl, item.artifact)], None
    return item.type, inspect.Parameter.empty if item.required else item.default


@pytest.mark.parametrize("name", DECLARED)
def test_kfp_function_signature_matches_the_declaration(name):
    row = registry.row(name)
    declared, function = row.interface(), row.kfp_function()
    where = row.definition_file
    parameters = {p.name: p for p in inspect.signature(function).parameters.values()
                  if not _is_output(p.annotation)}
    assert sorted(parameters) == sorted(declared.names(kfp_only=True)), (
        f"{where}: the KFP function `{name}` and its INTERFACE ({row.inputs_file}) disagree: only in the function "
        f"{sorted(set(parameters) - set(declared.names(kfp_only=True)))}, only declared "
        f"{sorted(set(declared.names(kfp_only=True)) - set(parameters))}")
    for item in declared.inputs:
        if not item.kfp:
            continue
        parameter = parameters[item.name]
        annotation, expected = _expected_kfp_parameter(item)
        assert parameter.annotation == annotation, f"{where}: `{item.name}` is not annotated {annotation}"
        assert parameter.default == expected and type(parameter.default) is type(expected), (
            f"{where}: `{item.name}` defaults to {parameter.default!r}, its INTERFACE to {expected!r}")


@pytest.mark.parametrize("name", DECLARED)
def test_run_keywords_match_the_declaration(name):
    row = registry.row(name)
    declared = row.interface()
    parameters = inspect.signature(row.load_runtime().run).parameters
    where = row.runtime_file
    assert sorted(set(parameters) - RUN_ONLY) == sorted(declared.names()), (
        f"{where}: `run()` takes what its INTERFACE ({row.inputs_file}) does not declare, or lacks an input "
        "(decorate it with `@INTERFACE.takes_inputs()`)")
    for item in declared.inputs:
        expected = inspect.Parameter.empty if item.required else item.default
        assert parameters[item.name].default == expected, f"{where}: `run()`'s `{item.name}` default"


def test_the_tfjob_launcher_takes_every_train_input():
    """The launcher's KFP function (components/train/tfjob.py `train_with_tfjob`) is generated from train's
    INTERFACE and the launcher's own `LAUNCHER_INPUTS`; KFP runs its source text in the pod, which must be the same."""
    from tfpipe.components.train import tfjob as tfjob_train

    fix = "; components/train/tfjob.py `launcher_source` generates it from components/train/inputs.py INTERFACE"
    parameters = inspect.signature(tfjob_train.train_with_tfjob).parameters
    missing = [item.name for item in definitions.TRAIN.inputs if item.kfp and item.name not in parameters]
    assert not missing, f"the TFJob launcher lacks train input(s) {missing}{fix}"
    for item in definitions.TRAIN.inputs:
        if item.kfp:
            annotation, expected = _expected_kfp_parameter(item)
            got = parameters[item.name]
            assert (got.default, got.annotation) == (expected, annotation), (
                f"the TFJob launcher's `{item.name}` is {got.annotation} = {got.default!r}, train declares "
                f"{annotation} = {expected!r}{fix}")
    own = {name for name, p in parameters.items() if not _is_output(p.annotation)} - set(definitions.TRAIN.names())
    assert own == {item.name for item in tfjob_train.LAUNCHER_INPUTS}, fix
    # What KFP inlines into the pod's command is the generated source, and it compiles to the same signature.
    command = " ".join(tfjob_train.component("registry.example.com/t/tfpipe:1").component_spec.implementation
                       .container.command)
    assert tfjob_train.launcher_source().strip() in command
    namespace = {"__name__": "kfp_pod"}
    exec(tfjob_train.KFP_PRELUDE + tfjob_train.launcher_source(), namespace)
    assert inspect.signature(namespace["train_with_tfjob"]).parameters == parameters
    # Train's outputs, artifacts and parameters alike, each documented as train documents it.
    train_signature = inspect.signature(registry.row("train").kfp_function())
    outputs = {name: p.annotation for name, p in parameters.items() if _is_output(p.annotation)}
    assert outputs == {name: p.annotation for name, p in train_signature.parameters.items()
                       if _is_output(p.annotation)}, fix
    launcher_returns = inspect.signature(tfjob_train.train_with_tfjob).return_annotation
    assert launcher_returns.__annotations__ == train_signature.return_annotation.__annotations__, fix
    spec = tfjob_train.component("registry.example.com/t/tfpipe:1").component_spec
    assert set(spec.outputs) == set(outputs) | set(launcher_returns.__annotations__)
    assert spec.inputs["image"].description == tfjob_train.LAUNCHER["image"].help


@pytest.mark.parametrize("name", [row.name for row in registry.rows(registry.STEP) if row.interface() is not None])
def test_a_step_with_a_declaration_takes_its_inputs_in_order(name):
    row = registry.row(name)
    parameters = inspect.signature(row.kfp_function()).parameters
    assert list(parameters) == row.interface().names(), f"{row.definition_file}: `{row.function}`'s parameters"
    assert list(inspect.signature(row.load_runtime().run).parameters) == list(parameters), row.runtime_file


@pytest.mark.parametrize("name", COMPONENTS)
def test_entry_point_flags_come_from_the_declaration(name):
    declared = definitions.INTERFACES[name]
    values = flags.FlagValues()
    declared.define_flags(values)
    assert sorted(values) == sorted(declared.names())
    for item in declared.inputs:
        assert values[item.name].default == (None if item.required else item.default), item.name
        assert values[item.name].help.endswith(item.help)


def test_pipeline_parameters_are_every_declared_pipeline_input(tmp_path):
    pipeline = train_eval_export.build_pipeline(backend="gke", image="registry.example.com/t/tfpipe:1")
    parameters = pipeline.component_spec.inputs
    declared = {item.name for interface_ in registry.pipeline_interfaces() for item in interface_.inputs
                if item.pipeline}
    assert set(parameters) == declared | {"baseline_model_uri", "final_evaluate"}, (
        "pipelines/train_eval_export.py: the pipeline's parameters are not the pipeline inputs of the registry's "
        "rows with `pipeline_inputs` (components/registry.py)")
    # Every train input reaches the train task (the drift of deterministic & co. is gone).
    tasks = pipeline.pipeline_spec.root.dag.tasks
    assert set(tasks["train"].inputs.parameters) == {i.name for i in definitions.TRAIN.inputs if i.kfp and not i.artifact}


def test_argv_and_flags_round_trip():
    values = {"task": "digits", "model_dir": "gs://bucket/run", "train_steps": 7, "deterministic": False,
              "loss_upper_bound": 2.5, "task_config": '{"seed": 1}'}
    argv = definitions.TRAIN.argv(values)
    assert argv[:3] == ["--task=digits", "--model_dir=gs://bucket/run", "--train_steps=7"]
    parsed = flags.FlagValues()
    definitions.TRAIN.define_flags(parsed)
    parsed(["train", *argv])
    assert {k: v for k, v in definitions.TRAIN.flag_values(parsed).items() if k in values} == values


def _doc_rows():
    rows = set()
    for line in (ROOT / "docs" / "inputs.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("where", "---"):
            where = [n for n, i in definitions.INTERFACES.items() if cells[1] in i.names()] if cells[0] == "all" else [
                cells[0]]
            rows.update((w, cells[1]) for w in where)
    return rows


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_declared_input_has_a_row_in_docs_inputs(name):
    rows = _doc_rows()
    missing = [item.name for item in definitions.INTERFACES[name].inputs if (name, item.name) not in rows]
    assert not missing, (f"docs/inputs.md has no row for {name} input(s) {missing}: add `| {name} | <input> | "
                         "<bad value as JSON> | <what the error says> |` (or an `all` row)")


def test_every_row_of_docs_inputs_names_a_declared_input():
    declared = {(n, i.name) for n, interface_ in definitions.INTERFACES.items() for i in interface_.inputs}
    pipeline = {("pipelines", name) for name in inspect.signature(train_eval_export.build_pipeline).parameters}
    local = {("run-local", name) for name in local_run.INPUTS} | {
        ("run-local", name) for name in inspect.signature(local_run.run_local).parameters if name != "params"}
    unknown = _doc_rows() - declared - pipeline - local
    assert not unknown, (f"docs/inputs.md rows name no declared input: {sorted(unknown)} (a `where` must be a "
                         f"component of components/registry.py {list(COMPONENTS)}, `pipelines` or `run-local`)")


def test_an_input_declared_twice_is_refused():
    item = interface.Input("x", int, "An x.")
    with pytest.raises(ValueError, match=r"declares input\(s\) \['x'\] twice"):
        interface.Interface("c", (item, item))


def test_pipeline_types_agree_across_components():
    mismatched = interface.Interface("a", (interface.Input("n", int, "n"),)), interface.Interface(
        "b", (interface.Input("n", float, "n"),))
    with pytest.raises(ValueError, match=r"input 'n' is int in one component and float in 'b'"):
        interface.union(mismatched)


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_docstring_of_each_component_lists_its_inputs(name):
    row = registry.row(name)
    fn = row.kfp_function()
    documented = re.findall(r"^    (\w+): ", fn.__doc__, re.M)
    assert documented == list(inspect.signature(fn).parameters), (
        f"{row.definition_file}: call `INTERFACE.document({row.function}, outputs={{...}})` after `{row.function}`")
