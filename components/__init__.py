"""tfpipe's KFP components (train, evaluate, continuous_eval, export) and what they share.

Each component is one `run(...)` function, started either by KFP (a lightweight
Python component running in the project image) or from a shell with
`python -m components.<name> --flag=value ...`.
"""

import sys as _sys

if "tensorflow" not in _sys.modules:
    # Entry points (`python -m components.<name>`) and KFP step bodies import this package before
    # TensorFlow, which reads its GCS retry, timeout and stat-cache settings at import: give it ours
    # (values already in the environment win). In-process library users call it themselves.
    from components.gcs_retry import configure_gcs_retries as _configure_gcs_retries

    _configure_gcs_retries()
