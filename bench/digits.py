"""The data the training benchmarks run on: scikit-learn's bundled digits, read by the workers and the
accelerators part alike (no TensorFlow here)."""

from __future__ import annotations


def digits_arrays(seed: int):
    """scikit-learn's bundled digits (no download), scaled to [0, 1]; synthetic data when sklearn is missing."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits

        data = load_digits()
        x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)
        source = "sklearn digits"
    except ImportError:
        rng = np.random.default_rng(seed)
        x = rng.random((1797, 64), dtype=np.float32)
        y = rng.integers(0, 10, size=1797).astype(np.int64)
        source = "synthetic"
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order], source
