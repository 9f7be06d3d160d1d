"""The four KFP components, as lightweight Python components running in the project image.

Each function body imports the package (it runs inside the image, or under
`kfp.local.SubprocessRunner` in an environment that has tfpipe installed) and calls
the same `run(...)` as `python -m tfpipe.components.<name>`
(the functions and their inputs are declared in `tfpipe.components.definitions`). The image is a compile-time
setting: `components_for_image(image)` returns the four components for any image
reference; the module-level `train_op`, `evaluate_op`, `continuous_eval_op` and
`export_op` use `DEFAULT_IMAGE` (or `$TFPIPE_IMAGE`).

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
"""

import os
import types

from kfp import dsl

from tfpipe import checks
from tfpipe.components.definitions import COMPONENT_FUNCTIONS

DEFAULT_IMAGE = os.environ.get("TFPIPE_IMAGE", "us-docker.pkg.dev/tfpipe/tfpipe/tfpipe:0.1.0")


def components_for_image(image: str) -> types.SimpleNamespace:
    """The four components built for the container image `image`.

    Args:
        image: A container image reference holding tfpipe (see the Dockerfile).

    Returns:
        A namespace with `train`, `evaluate`, `continuous_eval` and `export`.
    """
    checks.check_image("image", image)
    return types.SimpleNamespace(**{
        fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in COMPONENT_FUNCTIONS
    })


_default = components_for_image(DEFAULT_IMAGE)
train_op = _default.train
evaluate_op = _default.evaluate
continuous_eval_op = _default.continuous_eval
export_op = _default.export
