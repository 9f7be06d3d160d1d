"""The registry of components (`components/registry.py`) is complete, consistent and light to import.

Every other list of components derives from it; these tests catch a component that exists without a row (or a
row without its parts), naming the file to change.
"""

import inspect
import pathlib
import pkgutil
import subprocess
import sys

import pytest

from tfpipe import checks
from tfpipe.components import definitions, kfp_components, registry, specs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_definition_module_with_an_interface_has_a_row():
    """A new component's definition module is found: without its row, nothing else would list it."""
    rowed = {row.definition for row in registry.ROWS}
    for module in pkgutil.iter_modules(definitions.__path__):
        declared = getattr(__import__(f"{registry.DEFINITIONS}.{module.name}", fromlist=["INTERFACE"]), "INTERFACE",
                           None)
        assert declared is None or module.name in rowed, (
            f"components/definitions/{module.name}.py declares an INTERFACE but components/registry.py has no row "
            f"for it: add `Row({module.name!r})` to `ROWS`")


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
    if row.runtime is not None:
        runtime = row.load_runtime()
        parts = ("run", "run_for_kfp", "main") if row.kind == registry.COMPONENT else ("run",)
        missing = [part for part in parts if not callable(getattr(runtime, part, None))]
        assert not missing, f"{row.runtime_file} lacks {missing}"
        source = inspect.getsource(runtime)
        if row.kind == registry.COMPONENT:
            assert 'if __name__ == "__main__":' in source, (
                f"{row.runtime_file} has no entry point (`python -m {row.runtime_module}`)")
    assert (ROOT / row.definition_file).is_file(), row.definition_file
    assert row.runtime_file is None or (ROOT / row.runtime_file).is_file(), row.runtime_file


def test_derived_lists_follow_the_registry():
    components = registry.names(registry.COMPONENT)
    assert tuple(definitions.INTERFACES) == components
    assert tuple(fn.__name__ for fn in definitions.COMPONENT_FUNCTIONS) == components
    assert tuple(kfp_components.STEP_FUNCTIONS) == registry.names(registry.STEP)
    assert specs.SPEC_NAMES == tuple(row.spec_name for row in sorted(
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


def test_the_registry_and_the_spec_names_import_neither_kfp_nor_tensorflow():
    code = ("import sys, tfpipe.components.registry, tfpipe.components.specs; "
            "print(sorted(m for m in ('kfp', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
