"""Centred finite differences for gradient checks (float64, h=1e-5)."""

import numpy as np

H = 1e-5


def numerical_gradient(f, x: np.ndarray, h: float = H) -> np.ndarray:
    """d f() / d x by centred differences, perturbing ``x`` in place.

    ``f`` takes no arguments and returns a scalar computed from the current ``x``.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest elementwise |a - n| / max(|a| + |n|, 1e-8) (CS231n's measure)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    assert analytic.shape == numeric.shape, (analytic.shape, numeric.shape)
    return float(
        np.max(np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8))
    )
