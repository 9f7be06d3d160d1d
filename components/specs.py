"""The compiled component specs: where they ship, how to load them for an image, how to regenerate them.

One spec per row of `tfpipe.components.registry` (`<name>.yaml`: the components
such as `train.yaml`, the packaged pipeline's own steps such as `check_inputs.yaml`,
and the graph component `export_if_passed.yaml`), compiled from
`tfpipe.components.kfp_components`, ships in the wheel as package data of
`tfpipe.component_specs` (the repository's `component_specs/` folder). Use them in
your own pipeline::

    from tfpipe.components import load_component

    train = load_component("train", image="us-docker.pkg.dev/my-proj/ml/tfpipe:0.1.0")

or give `spec_path("train")` to `kfp.components.load_component_from_file`
(then the image is the one the specs were compiled for).

Importing this module imports neither kfp nor TensorFlow.
"""

import importlib.resources
import os
import pathlib
import re
from typing import Any, List, Optional

from tfpipe import checks
from tfpipe.components import registry

# The spec names, by kind of registry row: the components, the packaged pipeline's own steps (for users' DAGs:
# check-inputs and model-dir, `kfp_components.STEP_FUNCTIONS`), and graph components (`export_if_passed` gates
# export inside a sub-DAG: see `tfpipe.components.export_if_passed.definition` for why a plain `dsl.If` on an output
# does not run under kfp.local).
COMPONENT_NAMES = tuple(row.name for row in registry.rows(registry.COMPONENT))
STEP_NAMES = tuple(row.name for row in registry.rows(registry.STEP))
GRAPH_NAMES = tuple(row.name for row in registry.rows(registry.GRAPH))
SPEC_NAMES = COMPONENT_NAMES + STEP_NAMES + GRAPH_NAMES
SPEC_PACKAGE = "tfpipe.component_specs"
SPEC_FOLDER = "component_specs"
# `name = "tfpipe"` in the [project] table (tomllib is not in Python 3.10).
_PROJECT_NAME = re.compile(r'^\[project\][^\[]*?^name\s*=\s*"tfpipe"\s*$', re.M | re.S)


def _check_name(name: Any) -> str:
    if name not in SPEC_NAMES:
        raise checks.InputError(f"`name` must be one of {list(SPEC_NAMES)}, got {name!r}.")
    return name


def spec_path(name: str) -> pathlib.Path:
    """The installed spec file of component `name`, for `kfp.components.load_component_from_file`.

    Args:
        name: One of `SPEC_NAMES`.

    Raises:
        ValueError: For another name.
    """
    resource = importlib.resources.files(SPEC_PACKAGE) / f"{_check_name(name)}.yaml"
    return pathlib.Path(str(resource))


def spec_text(name: str, image: Optional[str] = None) -> str:
    """The YAML text of component `name`'s spec, with every executor's image set to `image` when given."""
    text = spec_path(name).read_text()
    if image is None:
        return text
    import yaml  # kfp's dependency; loaded only when retargeting.

    checks.check_image("image", image)
    spec = yaml.safe_load(text)
    for executor in spec["deploymentSpec"]["executors"].values():
        executor["container"]["image"] = image
    return yaml.safe_dump(spec, sort_keys=False)


def load_component(name: str, image: Optional[str] = None) -> Any:
    """Loads the packaged spec of component `name` as a KFP component, optionally for another image.

    Args:
        name: One of `SPEC_NAMES` (a component such as `train`, a step such as `check_inputs`, or
            `export_if_passed`).
        image: The container image the component runs in (your registry's copy
            of the tfpipe image, or an image derived from it); None keeps the
            image the specs were compiled for.

    Returns:
        The component (`kfp.components.YamlComponent`), callable in a `@dsl.pipeline`.

    Raises:
        ValueError: For an unknown name or a malformed image reference.
    """
    from kfp import components

    return components.load_component_from_text(spec_text(name, image))


def write_specs(directory: "os.PathLike[str] | str", image: Optional[str] = None) -> List[str]:
    """Compiles each row of the registry for `image` into `<directory>/<spec name>.yaml`; returns the paths.

    Args:
        directory: Where to write.
        image: The image of the components; default `kfp_components.LOCAL_IMAGE`, the tag `make image`
            builds, which the packaged specs name (`$TFPIPE_IMAGE` is not read: it never leaks into them).
    """
    from kfp import compiler

    from tfpipe.components import kfp_components

    os.makedirs(directory, exist_ok=True)
    built = kfp_components.components_for_image(image or kfp_components.LOCAL_IMAGE)
    # A graph row's function builds it from the built components.
    specs = {row.name: row.kfp_function()(built) if row.kind == registry.GRAPH else getattr(built, row.name)
             for row in registry.ROWS}
    paths = []
    for name, component in specs.items():
        path = os.path.join(directory, f"{name}.yaml")
        compiler.Compiler().compile(component, path)
        paths.append(path)
    return paths


def checkout_spec_dir(start: "os.PathLike[str] | str" = ".") -> Optional[pathlib.Path]:
    """The `component_specs/` folder of the tfpipe checkout that holds `start`, or None outside one.

    A checkout is a folder whose `pyproject.toml` names the project `tfpipe`
    and which has a `component_specs/` folder; `start` and its parents are
    searched. An installed package is never a checkout.
    """
    for folder in [pathlib.Path(start).resolve(), *pathlib.Path(start).resolve().parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and (folder / SPEC_FOLDER).is_dir():
            if _PROJECT_NAME.search(pyproject.read_text(errors="replace")):
                return folder / SPEC_FOLDER
    return None
