"""Test support: a local GCS emulator that TensorFlow's gs:// filesystem can reach."""
