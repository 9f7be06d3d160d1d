"""The registry of components (`components/registry.py`) is complete, consistent and light to import.

Every other list of components derives from it; these tests catch a component that exists without a row (or a
row without its parts), naming the file to change.
"""

import importlib
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

from tfpipe import checks
from tfpipe.components import definitions
from tfpipe.components import kfp_components
from tfpipe.components import registry
from tfpipe.components import specs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_component_package_has_a_row():
    """A new component's package is found: without its row, nothing else would list it. (The packaged pipeline's
    own steps that declare no inputs, `baseline` and `registration`, are not loadable and have none.)"""
    rowed = set(registry.names())
    for folder in sorted((ROOT / "components").iterdir()):
        if not (folder / "inputs.py").is_file():
            continue
        inputs = importlib.import_module(f"{registry.PACKAGE}.{folder.name}.inputs")
        if hasattr(inputs, "INTERFACE"):
            assert folder.name in rowed, (
                f"components/{folder.name}/inputs.py declares a component but components/registry.py has no "
                f"row for it: add `Row({folder.name!r})` to `ROWS`")


@pytest.mark.parametrize("name", registry.names())
def test_each_row_names_parts_that_exist(name):
    row = registry.row(name)
    assert callable(row.kfp_function()), f"{row.definition_file} has no function `{row.function}`"
    if row.kind == registry.COMPONENT:
        assert row.inputs_file is not None and (ROOT / row.inputs_file).is_file(), (
            f"components/{name}/inputs.py is missing: the component's `INTERFACE`")
        assert row.interface().name == name, f"{row.inputs_file}: `INTERFACE`'s name is not {name!r}"
        assert row.kfp_function().__name__ == name, (
            f"{row.definition_file}: the KFP function is `{row.kfp_function().__name__}`, not `{name}` (the "
            "component's name in KFP comes from it)")
    if row.runtime:
        runtime = row.load_runtime()
        parts = ("run", "run_for_kfp", "main") if row.kind == registry.COMPONENT else ("run",)
        missing = [part for part in parts if not callable(getattr(runtime, part, None))]
        assert not missing, f"{row.runtime_file} lacks {missing}"
        if row.kind == registry.COMPONENT:
            assert (ROOT / "components" / name / "__main__.py").is_file(), (
                f"components/{name}/__main__.py is missing: the entry point `python -m {row.package}`")
    assert (ROOT / row.definition_file).is_file(), row.definition_file
    assert row.runtime_file is None or (ROOT / row.runtime_file).is_file(), row.runtime_file


def test_derived_lists_follow_the_registry():
    components = registry.names(registry.COMPONENT)
    assert tuple(definitions.INTERFACES) == components
    assert tuple(fn.__name__ for fn in definitions.COMPONENT_FUNCTIONS) == components
    assert tuple(kfp_components.STEP_FUNCTIONS) == registry.names(registry.STEP)
    assert specs.SPEC_NAMES == tuple(row.name for row in sorted(
        registry.ROWS, key=lambda row: registry.KINDS.index(row.kind)))
    built = kfp_components.components_for_image(kfp_components.LOCAL_IMAGE)
    assert sorted(vars(built)) == sorted(components + registry.names(registry.STEP))


def test_registry_lookups_refuse_unknown_names():
    with pytest.raises(KeyError, match=r"no component 'nope' in components/registry.py"):
        registry.row("nope")
    with pytest.raises(checks.InputError, match=r"`kind` must be one of \['component', 'step', 'graph'\], got 'x'"):
        registry.rows("x")
    with pytest.raises(ValueError, match=r"`kind` of component 'c' must be one of"):
        registry.Row("c", kind="x")


def _imported(modules, packages):
    """Which of `packages` a fresh interpreter has loaded after importing `modules`."""
    code = f"import sys, {', '.join(modules)}; print(sorted(p for p in {tuple(packages)!r} if p in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_the_registry_the_spec_names_the_component_packages_and_their_inputs_import_neither_kfp_nor_tensorflow():
    modules = ["tfpipe.components.registry", "tfpipe.components.specs", *(row.package for row in registry.ROWS),
               *(row.inputs_module for row in registry.ROWS if row.inputs_module)]
    assert _imported(modules, ("kfp", "tensorflow")) == "[]"


def test_the_runtime_modules_do_not_import_kfp():
    """A step started as `python -m tfpipe.components.<name>` (a container's command, a TFJob replica) has no use for
    kfp, whose import (its client, Kubernetes' client) costs about 0.8 s of CPU: the runtimes take their inputs from
    `inputs`, not from `definition`."""
    imported = _imported([row.runtime_module for row in registry.ROWS if row.runtime_module], ("kfp",))
    assert imported == "[]", f"a runtime module imports kfp: {imported}"


def test_a_definition_is_a_module_beside_its_runtime():
    """`tfpipe.components.<name>.definition` is the module (not a function that shadows it), in the component's
    own package beside its runtime module."""
    for row in registry.ROWS:
        module = row.definitions()
        assert inspect.ismodule(module) and module.__name__ == row.definition_module
        assert getattr(module, row.function).__module__ == row.definition_module
