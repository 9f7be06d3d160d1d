"""The KFP components, as lightweight Python components running in the project image.

Each function body imports the package (it runs inside the image, or under
`kfp.local.SubprocessRunner` in an environment that has tfpipe installed) and calls
the same `run(...)` as `python -m tfpipe.components.<name>`
(the functions and their inputs are declared in each `tfpipe.components.<name>.definition`; which they are, in
`tfpipe.components.registry`). The image is a compile-time setting: `components_for_image(image)` returns the
registry's components and steps for any image reference (`DEFAULT_IMAGE`: `$TFPIPE_IMAGE`, else `LOCAL_IMAGE`,
the tag `make image` builds).

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
from tfpipe.components import registry
from tfpipe.components.definitions import COMPONENT_FUNCTIONS  # noqa: F401 (public here too)

# The tag `make image` builds (see the Dockerfile): clearly local, so that nothing compiled for a cluster names it
# unnoticed; the packaged specs name it, and compiling for GKE or Vertex needs an explicit image.
LOCAL_IMAGE = f"localhost/tfpipe:{__version__}"
DEFAULT_IMAGE = os.environ.get("TFPIPE_IMAGE", LOCAL_IMAGE)
# The packaged pipeline's own steps, loadable too (`load_component("check_inputs")`), for users' DAGs: check-inputs
# (every input against the task, one batch through it, no retries) and model-dir (the run directory, given or
# `<pipeline root>/<job id>/model_dir`): the registry's rows of kind `step`.
STEP_FUNCTIONS = {row.name: row.kfp_function() for row in registry.rows(registry.STEP)}


def components_for_image(image: str) -> types.SimpleNamespace:
    """The registry's components and steps built for the container image `image`.

    Args:
        image: A container image reference holding tfpipe (see the Dockerfile).

    Returns:
        A namespace with one attribute per row of kind `component` or `step` of `tfpipe.components.registry`,
        named as the row (`train`, `evaluate`, ..., and the pipeline's own steps `check_inputs`, `model_dir`).
    """
    checks.check_image("image", image)
    built = {row.name: dsl.component(row.kfp_function(), base_image=image, install_kfp_package=False)
             for row in registry.ROWS if row.kind in (registry.COMPONENT, registry.STEP)}
    return types.SimpleNamespace(**built)
