"""Prints the requirements that pyproject.toml declares for the core install and the given extras, one a line.

    python scripts/pyproject_requirements.py pyproject.toml examples,gpu

The Dockerfile installs these in a layer of their own, before it copies the sources, so that editing the
sources does not reinstall TensorFlow (and CUDA). Only the standard library (and, on Python 3.10, pip's own
copy of tomli) is used: it runs in the bare base image.
"""

import sys

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser.
    from pip._vendor import tomli as tomllib


def requirements(pyproject_path: str, extras: str) -> list:
    """The core dependencies plus those of each comma-separated extra in `extras`.

    Raises:
        SystemExit: For an extra that pyproject.toml does not declare.
    """
    with open(pyproject_path, "rb") as f:
        project = tomllib.load(f)["project"]
    optional = project.get("optional-dependencies", {})
    names = [name.strip() for name in extras.split(",") if name.strip()]
    unknown = sorted(set(names) - set(optional))
    if unknown:
        raise SystemExit(f"extras {unknown} are not declared in {pyproject_path}; declared: {sorted(optional)}")
    return list(project.get("dependencies", [])) + [req for name in names for req in optional[name]]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} PYPROJECT_TOML EXTRAS (comma-separated, may be empty)")
    print("\n".join(requirements(sys.argv[1], sys.argv[2])))
