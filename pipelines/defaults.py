"""Compile-time defaults of the packaged pipeline: `tfpipe compile --task NAME --task-config JSON --param K=V`.

A compiled pipeline's parameters keep their defaults in the YAML, so a run submitted without `--param task=...`
trains whatever the YAML says. `check_defaults` checks defaults as a run's parameters are checked (each declared
input's own check, `tfpipe.components.interface.Input.validate`), and `check_task_for_image` refuses the one
silent mistake: a pipeline compiled for an image of your own (one not named `tfpipe`) that would still train the
built-in example `digits`.
"""

import re
from typing import Any, Mapping, Optional, Sequence

from tfpipe import checks
from tfpipe.components.interface import Input

STOCK_IMAGE_NAME = "tfpipe"
# registry/path/NAME[:tag][@digest]: NAME is the last path segment.
_IMAGE_NAME = re.compile(r"(?:.*/)?([^/:@]+)(?::[^/@]*)?(?:@.*)?$")


def image_name(image: str) -> str:
    """The repository name of an image reference: `tfpipe` for `us-docker.pkg.dev/p/ml/tfpipe:0.1.0`."""
    match = _IMAGE_NAME.fullmatch(image)
    return match.group(1) if match else image


def check_defaults(defaults: Optional[Mapping[str, Any]], inputs: Sequence[Input]) -> dict:
    """Checks pipeline defaults: every name a pipeline parameter, every value passing that input's check.

    Returns:
        The defaults as given (a pipeline default is stored as the value the run would pass).

    Raises:
        checks.InputError: For an unknown parameter (listing the accepted ones) or a bad value (naming it).
    """
    declared = {item.name: item for item in inputs}
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(declared))
    if unknown:
        raise checks.InputError(f"unknown pipeline parameter(s) {unknown} for a default; accepted: {sorted(declared)}.")
    for name, value in defaults.items():
        item = declared[name]
        if item.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = defaults[name] = float(value)
        if not isinstance(value, item.type) or (item.type is int and isinstance(value, bool)):
            raise checks.InputError(f"pipeline default `{name}` must be {item.type.__name__}, got {checks.shown(value)}.")
        if name != "model_dir" or value:  # "" : under the pipeline root.
            item.validate(value)
    return defaults


def check_task_for_image(image: str, defaults: Mapping[str, Any], builtin_task: str) -> None:
    """Refuses an image of your own whose pipeline would train the built-in example by default.

    Raises:
        checks.InputError: When `image` is not named `tfpipe` and `defaults` set no `task`.
    """
    if "task" not in defaults and image_name(image) != STOCK_IMAGE_NAME:
        raise checks.InputError(
            f"`image` {image!r} is not the tfpipe image, but the pipeline's `task` would default to "
            f"{builtin_task!r}: set the task your image runs with `tfpipe compile --task NAME` (and "
            f"`--task-config JSON`; in Python `build_pipeline(defaults={{'task': NAME}})`), or `--task "
            f"{builtin_task}` to keep the example."
        )
