"""Vertex AI's output directories as the components' defaults.

A Vertex AI CustomJob with a base output directory (`baseOutputDirectory`; GCPC's
`base_output_directory`) sets, in every replica's environment:

| variable | value | what tfpipe does with it |
|---|---|---|
| `AIP_CHECKPOINT_DIR` | `<base>/checkpoints/` | the run directory (`model_dir`) of every component, when `model_dir` is empty |
| `AIP_MODEL_DIR` | `<base>/model/` | export's `export_dir` (a copy in `<AIP_MODEL_DIR>/<step>/`), when `export_dir` is empty |
| `AIP_TENSORBOARD_LOG_DIR` | `<base>/logs/`, uploaded to the job's Vertex TensorBoard when it has one | a second copy of the summaries: train's in `<dir>/train/` (and its profiler traces), an evaluator's in `<dir>/eval/<eval_name>/` |

An explicit input always wins: only an empty `model_dir` or `export_dir` takes the
variable's value, and the summaries keep going to the run directory too (the
report and the evaluators read them there). Without the variables nothing
changes. The pipeline passes `model_dir` explicitly, so there only the TensorBoard
directory applies (`tfpipe compile --vertex-tensorboard`).
"""

import os
from typing import Any, Dict, Mapping, Optional

from tfpipe import checks

CHECKPOINT_DIR = "AIP_CHECKPOINT_DIR"
MODEL_DIR = "AIP_MODEL_DIR"
TENSORBOARD_LOG_DIR = "AIP_TENSORBOARD_LOG_DIR"

# Input name -> the variable an empty value falls back to.
DEFAULTS = {"model_dir": CHECKPOINT_DIR, "export_dir": MODEL_DIR}


def _value(name: str, environ: Optional[Mapping[str, str]]) -> Optional[str]:
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value.rstrip("/") or None


def check_environment(environ: Optional[Mapping[str, str]] = None) -> None:
    """Checks each of Vertex's directory variables that is set, before anything is written.

    Raises:
        checks.InputError: Naming the variable and its value, for one that is not a gs:// URI, a /gcs/ path or
            an absolute local path, or that is a filesystem root.
    """
    environ = os.environ if environ is None else environ
    for variable in (CHECKPOINT_DIR, MODEL_DIR, TENSORBOARD_LOG_DIR):
        value = environ.get(variable, "").strip()
        if not value:
            continue
        checks.check_uri(f"${variable}", value)
        if "://" not in value and not value.startswith("/"):
            raise checks.InputError(
                f"`${variable}` ({checks.shown(value)}) is a relative path; it must be a gs:// URI, a /gcs/ path or "
                "an absolute path.")


def with_defaults(values: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """`values` (a component's inputs) with each empty `model_dir`/`export_dir` set from Vertex's variable.

    Args:
        values: The component's inputs, e.g. `run()`'s `locals()`; inputs it lacks are left out.
        environ: The environment (default: `os.environ`).

    Returns:
        A copy of `values`, the defaults applied (and announced on stdout).

    Raises:
        checks.InputError: For a Vertex directory variable that is set to something unusable
            (`check_environment`).
    """
    check_environment(environ)
    result = dict(values)
    for name, variable in DEFAULTS.items():
        if result.get(name, None) != "":
            continue
        found = _value(variable, environ)
        if found is not None:
            print(f"vertex | `{name}` is empty: using ${variable} ({found})", flush=True)
            result[name] = found
    return result


def tensorboard_dir(relative: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """`$AIP_TENSORBOARD_LOG_DIR/<relative>` where Vertex set the variable, else None."""
    found = _value(TENSORBOARD_LOG_DIR, environ)
    return f"{found}/{relative}" if found is not None else None
