"""Pytest fixtures for tests that use gs:// through the local GCS emulator.

Enable them in ``tests/conftest.py``::

    pytest_plugins = ["tests.support.fixtures"]

Then::

    def test_checkpoint(gcs_bucket: str) -> None:      # "gs://test-1a2b3c..."
        manager = tf.train.CheckpointManager(ckpt, f"{gcs_bucket}/ckpt", max_to_keep=2)

    def test_worker(gcs_emulator, gcs_bucket) -> None:  # a subprocess gets the same emulator
        subprocess.run([...], env={**os.environ, **gcs_emulator.env}, check=True, timeout=60)

TensorFlow reads its GCS retry and stat-cache settings when its gs:// filesystem is first used in a process: a test
that touches gs:// before ``gcs_emulator`` is first requested fixes TensorFlow's defaults (5 s stat cache, slow
retries) for the rest of the pytest process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.gcs_emulator import GcsEmulator, restore_environment


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A running emulator for the whole session, with its environment applied to this process.

    ``os.environ`` is restored and the emulator's processes are stopped at the end of the session.
    """
    with GcsEmulator() as emulator:
        previous = emulator.apply_to_current_process()
        try:
            yield emulator
        finally:
            restore_environment(previous)


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A fresh, uniquely named, empty bucket; returns its URL ``gs://<name>`` (no trailing slash)."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    gcs_emulator.create_bucket(name)
    return f"gs://{name}"
