"""The four KFP components, as lightweight Python components running in the project image.

Each function body imports the package (it runs inside the image, or under
`kfp.local.SubprocessRunner` in an environment that has tfpipe installed) and calls
the same `run(...)` as `python -m tfpipe.components.<name>`
(the functions and their inputs are declared in `tfpipe.components.definitions`). The image is a compile-time
setting: `components_for_image(image)` returns the four components for any image
reference (`DEFAULT_IMAGE`: `$TFPIPE_IMAGE`, else `LOCAL_IMAGE`, the tag `make image` builds).

Outputs (stable names):

* train: `model` (Model; metadata `model_dir`, `final_step`, `checkpoint`), `metrics`
  (Metrics: the last train loop's scalars and `step`), and parameters `final_step`, `checkpoint`.
* evaluate: `metrics`, `classification_metrics` (10x10 for `digits`), `report` (HTML),
  and parameters `step`, `checkpoint`.
* continuous_eval: the same three artifacts for the best checkpoint, and parameters
  `best_step`, `best_checkpoint`, `evaluated`, `skipped`, `passed` (whether the best
  checkpoint's metrics pass `thresholds`).
* export: `model` (Model: the SavedModel; metadata `step`, `checkpoint`, `metrics`,
  `signatures`, `export_path`), and parameters `step`, `export_path`.
* check_inputs: parameters `best_metric`, `best_mode` (the effective ones: given, else the task's).
* model_dir: its `Output` parameter, the run directory.
"""

import os
import types

from kfp import dsl

from tfpipe import __version__, checks
from tfpipe.components.definitions import COMPONENT_FUNCTIONS
from tfpipe.components.definitions.check_inputs import check_inputs
from tfpipe.components.definitions.model_dir import resolve_model_dir

# The tag `make image` builds (see the Dockerfile): clearly local, so that nothing compiled for a cluster names it
# unnoticed; the packaged specs name it, and compiling for GKE or Vertex needs an explicit image.
LOCAL_IMAGE = f"localhost/tfpipe:{__version__}"
DEFAULT_IMAGE = os.environ.get("TFPIPE_IMAGE", LOCAL_IMAGE)
# The packaged pipeline's own steps, loadable too (`load_component("check_inputs")`), for users' DAGs: check-inputs
# (every input against the task, one batch through it, no retries) and model-dir (the run directory, given or
# `<pipeline root>/<job id>/model_dir`).
STEP_FUNCTIONS = {"check_inputs": check_inputs, "model_dir": resolve_model_dir}


def components_for_image(image: str) -> types.SimpleNamespace:
    """The four components built for the container image `image`.

    Args:
        image: A container image reference holding tfpipe (see the Dockerfile).

    Returns:
        A namespace with `train`, `evaluate`, `continuous_eval` and `export`, and the pipeline's own steps
        `check_inputs` and `model_dir` (`STEP_FUNCTIONS`).
    """
    checks.check_image("image", image)
    build = lambda fn: dsl.component(fn, base_image=image, install_kfp_package=False)  # noqa: E731
    return types.SimpleNamespace(
        **{fn.__name__: build(fn) for fn in COMPONENT_FUNCTIONS},
        **{name: build(fn) for name, fn in STEP_FUNCTIONS.items()},
    )
