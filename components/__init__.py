"""tfpipe's KFP components (train, evaluate, ...: `tfpipe.components.registry` lists them) and what they share.

Each component is one `run(...)` function, started either by KFP (a lightweight
Python component running in the project image) or from a shell with
`python -m tfpipe.components.<name> --flag=value ...`.

The compiled specs ship with the package: `load_component(name, image=...)`
returns one as a KFP component for your image, and `spec_path(name)` is its file
for `kfp.components.load_component_from_file`.
"""

import sys as _sys

from tfpipe.components.specs import COMPONENT_NAMES
from tfpipe.components.specs import SPEC_NAMES
from tfpipe.components.specs import load_component
from tfpipe.components.specs import spec_path

if "tensorflow" not in _sys.modules:
    # Entry points (`python -m tfpipe.components.<name>`) and KFP step bodies import this package before
    # TensorFlow, which reads its GCS retry, timeout and stat-cache settings at import: give it ours
    # (values already in the environment win). In-process library users call it themselves.
    from tfpipe.components.common.gcs_retry import configure_gcs_retries as _configure_gcs_retries

    _configure_gcs_retries()

__all__ = ["COMPONENT_NAMES", "SPEC_NAMES", "load_component", "spec_path"]
