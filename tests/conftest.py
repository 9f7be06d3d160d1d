"""Shared pytest setup: quiet TensorFlow, the GCS emulator fixtures, per-test temp dirs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["tests.support.fixtures"]
