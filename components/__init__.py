"""tfpipe's KFP components (train, evaluate, ...: `tfpipe.components.registry` lists them) and what they share.

Each component is one `run(...)` function, started either by KFP (a lightweight
Python component running in the project image) or from a shell with
`python -m tfpipe.components.<name> --flag=value ...`.

The compiled specs ship with the package: `load_component(name, image=...)`
returns one as a KFP component for your image, and `spec_path(name)` is its file
for `kfp.components.load_component_from_file`.
"""

import os as _os
import sys as _sys

from tfpipe.components.specs import COMPONENT_NAMES
from tfpipe.components.specs import SPEC_NAMES
from tfpipe.components.specs import load_component
from tfpipe.components.specs import spec_path

if "tensorflow" not in _sys.modules:
    # Entry points (`python -m tfpipe.components.<name>`) and KFP step bodies import this package before
    # TensorFlow, which reads these settings at import (values already in the environment win):
    # - its GCS retry, timeout and stat-cache settings: ours (in-process library users call this themselves);
    # - `TF_USE_LEGACY_KERAS=1`, as the image sets it (Dockerfile): `tf.keras` is Keras 2 (`tf_keras`), what
    #   tfpipe's runners take, so a task written with `tf.keras` runs the same under kfp.local or from a shell as
    #   in the image (Keras 3 objects, from `import keras`, are still refused naming the fix). TensorFlow then
    #   never imports Keras 3 either, which takes a quarter of each step's start.
    from tfpipe.components.common.gcs_retry import configure_gcs_retries as _configure_gcs_retries

    _configure_gcs_retries()
    _os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__all__ = ["COMPONENT_NAMES", "SPEC_NAMES", "load_component", "spec_path"]
