"""Pytest fixtures for tests that use gs:// through the local GCS emulator.

Enable them in ``tests/conftest.py``::

    pytest_plugins = ["tests.support.fixtures"]

Then::

    def test_checkpoint(gcs_bucket: str) -> None:      # "gs://test-1a2b3c..."
        manager = tf.train.CheckpointManager(ckpt, f"{gcs_bucket}/ckpt", max_to_keep=2)

    def test_worker(gcs_emulator, gcs_bucket) -> None:  # a subprocess gets the same emulator
        subprocess.run([...], env={**os.environ, **gcs_emulator.env}, check=True, timeout=60)

TensorFlow reads its GCS retry and stat-cache settings during ``import tensorflow``: gs:// calls made inside the
pytest process run with the values its environment had then (TensorFlow's defaults, unless set before pytest
started), not the fixture's; subprocesses given ``gcs_emulator.env`` get the fixture's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.gcs_emulator import GcsEmulator, restore_environment
from tests.support.gcs_proxy import FaultPolicy


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


@pytest.fixture
def faulty_gcs() -> Iterator[Callable[[FaultPolicy], GcsEmulator]]:
    """A factory of separate emulators whose proxy plays a fault policy: ``emulator = faulty_gcs(policy)``.

    Each call starts a fresh fake-gcs-server and proxy (about a second), independent of the session's
    ``gcs_emulator``; all are stopped at the end of the test. Nothing is applied to ``os.environ``: give
    ``emulator.env`` to the subprocesses that should see the faults. The policy is pickled into the proxy process,
    so it must be a module-level function or an instance of a module-level class (see
    :mod:`tests.support.gcs_faults`).
    """
    started: list[GcsEmulator] = []

    def start(policy: FaultPolicy) -> GcsEmulator:
        emulator = GcsEmulator(fault_policy=policy).start()
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in reversed(started):
            emulator.stop()
