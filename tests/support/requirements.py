"""What a test needs from the machine (a Docker engine, root for a tmpfs): absent here, a skip; absent in CI, a failure.

CI (`CI=true`, set by `.ci/run`) provides everything these tests need, so there a missing piece is a broken CI
setup that must not pass as skipped tests.
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skips the test with `reason`, or fails it in CI."""
    if IN_CI:
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)
