"""Compiles the four components to `component_specs/<name>.yaml` (never edited by hand).

    python -m components.specs [--out component_specs] [--image REF]

`tfpipe specs` runs the same. A test fails when the committed specs are stale.
"""

import argparse
import os
import pathlib
import sys
from typing import List, Optional

from kfp import compiler

from components import kfp_components

SPEC_DIR = pathlib.Path(__file__).resolve().parents[1] / "component_specs"


def write_specs(directory: os.PathLike = SPEC_DIR, image: str = kfp_components.DEFAULT_IMAGE) -> List[str]:
    """Compiles each component for `image` into `<directory>/<name>.yaml`; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    built = kfp_components.components_for_image(image)
    paths = []
    for fn in kfp_components.COMPONENT_FUNCTIONS:
        path = os.path.join(directory, f"{fn.__name__}.yaml")
        compiler.Compiler().compile(getattr(built, fn.__name__), path)
        paths.append(path)
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tfpipe specs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SPEC_DIR), help="Directory for the YAML files.")
    parser.add_argument("--image", default=kfp_components.DEFAULT_IMAGE, help="Container image of the components.")
    args = parser.parse_args(argv)
    for path in write_specs(args.out, args.image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
