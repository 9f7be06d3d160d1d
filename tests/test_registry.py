"""The registry of components (`components/registry.py`) is complete, consistent and light to import.

Every other list of components derives from it; these tests catch a component that exists without a row (or a
row without its parts), naming the file to change.
"""

import importlib
import inspect
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
        if not (folder / "definition.py").is_file():
            continue
        definition = importlib.import_module(f"{registry.PACKAGE}.{folder.name}.definition")
        if hasattr(definition, "INTERFACE"):
            assert folder.name in rowed, (
                f"components/{folder.name}/definition.py declares a component but components/registry.py has no "
                f"row for it: add `Row({folder.name!r})` to `ROWS`")


@pytest.mark.parametrize("name", registry.names())
def test_each_row_names_parts_that_exist(name):
    row = registry.row(name)
    assert callable(row.kfp_function()), f"{row.definition_file} has no function `{row.function}`"
    if row.kind == registry.COMPONENT:
        assert row.interface() is not None, f"{row.definition_file} declares no `INTERFACE`"
        assert row.interface().name == name, f"{row.definition_file}: `INTERFACE`'s name is not {name!r}"
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


def test_the_registry_the_spec_names_and_the_component_packages_import_neither_kfp_nor_tensorflow():
    packages = ", ".join(row.package for row in registry.ROWS)
    code = (f"import sys, tfpipe.components.registry, tfpipe.components.specs, {packages}; "
            "print(sorted(m for m in ('kfp', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_definition_is_a_module_beside_its_runtime():
    """`tfpipe.components.<name>.definition` is the module (not a function that shadows it), in the component's
    own package beside its runtime module."""
    for row in registry.ROWS:
        module = row.definitions()
        assert inspect.ismodule(module) and module.__name__ == row.definition_module
        assert getattr(module, row.function).__module__ == row.definition_module
