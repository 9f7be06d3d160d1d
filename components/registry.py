"""Every component tfpipe ships, declared once: one `Row` each in `ROWS`.

Everything that lists components derives from `ROWS`: the definitions' `INTERFACES` and `COMPONENT_FUNCTIONS`
(`tfpipe.components.definitions`), the built components (`kfp_components.components_for_image`,
`kfp_components.STEP_FUNCTIONS`), the packaged specs' names (`specs.COMPONENT_NAMES`, `STEP_NAMES`, `GRAPH_NAMES`,
`SPEC_NAMES`) and files (`tfpipe specs`), the packaged pipeline's parameters
(`tfpipe.pipelines.train_eval_export.PIPELINE_INPUTS`, hence `tfpipe run-local`'s and `tfpipe compile`'s options),
and the drift tests (`tests/test_interfaces.py`, `tests/test_inputs_table.py`, ...), which are parametrized over it.

A row names modules, not objects: importing this module imports neither kfp nor TensorFlow (the definitions
import kfp, the runtime modules TensorFlow, the inputs modules neither); `Row.interface()`, `Row.kfp_function()` and
`Row.load_runtime()` import them when asked.
"""

import dataclasses
import importlib
from types import ModuleType
from typing import Any, Callable, Optional, Tuple

from tfpipe import checks

# The kinds of row.
COMPONENT = "component"  # A component: an INTERFACE, a KFP function, a runtime module with run() and an entry point.
STEP = "step"  # A step of the packaged pipeline, loadable for users' DAGs (`load_component`).
GRAPH = "graph"  # A graph component (a sub-DAG) built from the components.
KINDS = (COMPONENT, STEP, GRAPH)

PACKAGE = "tfpipe.components"


@dataclasses.dataclass(frozen=True)
class Row:
    """One component: its name and what its package `tfpipe.components.<name>` (`components/<name>/`) holds.

    Attributes:
        name: The component's name: its package, its spec `component_specs/<name>.yaml`, `load_component(name)`,
            the attribute of `kfp_components.components_for_image(...)`, its key in `definitions.INTERFACES`, its
            rows' `where` in `docs/inputs.md`.
        kind: `COMPONENT`, `STEP` or `GRAPH`.
        function: The name of the KFP function in the package's `definition` module (TensorFlow-free; default
            `name`); for a graph, a function that takes the built components (`components_for_image(...)`) and
            returns the graph component.
        runtime: Whether the package has a `runtime` module with `run(**inputs)` (and, for a component,
            `run_for_kfp` and the entry point `python -m tfpipe.components.<name>`, its `__main__`) and an `inputs`
            module with the `INTERFACE` that `run()` takes; default: true for a component, false else.
        pipeline_inputs: Whether the packaged pipeline's parameters include this component's pipeline inputs
            (`Input.pipeline`): true for the components the packaged pipeline takes its parameters from.
    """

    name: str
    kind: str = COMPONENT
    function: str = ""
    runtime: Optional[bool] = None
    pipeline_inputs: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` of component {self.name!r} must be one of {list(KINDS)}, got {self.kind!r}.")
        object.__setattr__(self, "function", self.function or self.name)
        if self.runtime is None:
            object.__setattr__(self, "runtime", self.kind == COMPONENT)

    @property
    def package(self) -> str:
        """The component's package, e.g. `tfpipe.components.train`."""
        return f"{PACKAGE}.{self.name}"

    @property
    def definition_module(self) -> str:
        """The definition module's full name, e.g. `tfpipe.components.train.definition`."""
        return f"{self.package}.definition"

    @property
    def definition_file(self) -> str:
        """The definition module's file in the repository (for failure messages: the file to change)."""
        return f"components/{self.name}/definition.py"

    @property
    def inputs_module(self) -> Optional[str]:
        """The inputs module's full name (e.g. `tfpipe.components.train.inputs`), or None for a row without a runtime."""
        return f"{self.package}.inputs" if self.runtime else None

    @property
    def inputs_file(self) -> Optional[str]:
        """The inputs module's file in the repository (for failure messages: the file to change), or None."""
        return f"components/{self.name}/inputs.py" if self.runtime else None

    @property
    def runtime_module(self) -> Optional[str]:
        """The runtime module's full name (e.g. `tfpipe.components.train.runtime`), or None."""
        return f"{self.package}.runtime" if self.runtime else None

    @property
    def runtime_file(self) -> Optional[str]:
        """The runtime module's file in the repository, or None."""
        return f"components/{self.name}/runtime.py" if self.runtime else None

    def definitions(self) -> ModuleType:
        """The definition module (imports kfp)."""
        return importlib.import_module(self.definition_module)

    def interface(self) -> Any:
        """The component's `INTERFACE` (`tfpipe.components.interface.Interface`; imports neither kfp nor TensorFlow),
        or None for a row without a runtime."""
        return None if self.inputs_module is None else importlib.import_module(self.inputs_module).INTERFACE

    def kfp_function(self) -> Callable[..., Any]:
        """The KFP component function (a graph's builder for `GRAPH` rows)."""
        return getattr(self.definitions(), self.function)

    def load_runtime(self) -> ModuleType:
        """The runtime module (imports TensorFlow).

        Raises:
            ValueError: If the row has no runtime module.
        """
        if self.runtime_module is None:
            raise ValueError(f"component {self.name!r} has no runtime module.")
        return importlib.import_module(self.runtime_module)


# The components, in the order they are listed everywhere (specs, `components_for_image`, the drift tests).
ROWS: Tuple[Row, ...] = (
    Row("train", pipeline_inputs=True),
    Row("evaluate"),
    Row("continuous_eval", pipeline_inputs=True),
    Row("export", pipeline_inputs=True),
    Row("check_inputs", kind=STEP, runtime=True),
    Row("model_dir", kind=STEP, function="resolve_model_dir"),
    Row("export_if_passed", kind=GRAPH, function="packaged"),
)


def rows(kind: Optional[str] = None) -> Tuple[Row, ...]:
    """The rows of `kind` (all rows for None), in `ROWS` order."""
    if kind is not None and kind not in KINDS:
        raise checks.InputError(f"`kind` must be one of {list(KINDS)}, got {kind!r}.")
    return tuple(item for item in ROWS if kind is None or item.kind == kind)


def names(kind: Optional[str] = None) -> Tuple[str, ...]:
    """The names of the rows of `kind` (all for None), in `ROWS` order."""
    return tuple(item.name for item in rows(kind))


def row(name: str) -> Row:
    """The row of component `name`.

    Raises:
        KeyError: For a name no row has, listing the names.
    """
    for item in ROWS:
        if item.name == name:
            return item
    raise KeyError(f"no component {name!r} in components/registry.py; components: {list(names())}.")


def pipeline_interfaces() -> Tuple[Any, ...]:
    """The `INTERFACE`s whose pipeline inputs are the packaged pipeline's parameters (rows with `pipeline_inputs`)."""
    return tuple(item.interface() for item in ROWS if item.pipeline_inputs)
