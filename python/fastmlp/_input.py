"""The estimator's images as the core reads them: float32 rows, or pixels in their own
dtype scaled by a fitted :class:`~fastmlp.PixelScaler` while the core gathers each batch.

With ``input_scaler`` the float32 copy of X is never made: a uint8 data set stays uint8,
a memory-mapped one stays on disk, and the core evaluates PixelScaler's own expression
``float32((float64(x) - offset) / scale)`` per pixel, so a fit is bitwise equal to the
pipeline ``make_pipeline(PixelScaler(...), MLPImageClassifier(...))``.

Shape legend: n samples, d features per sample (H * W * C), S the scaler's statistics.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.base import clone

from . import _core
from .preprocessing import _FLOAT32_MAX

__all__ = ["fit_input_scaler", "pixel_input", "pixel_dtype"]

# The dtypes the core reads as they are; the others are converted exactly first.
_CORE_DTYPES = frozenset(np.dtype(t) for t in (
    np.float32, np.float64, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
    np.uint64, np.int64))


def fit_input_scaler(scaler, X):
    """A fitted clone of ``scaler`` on the images X as the user gave them (so 3-D and 4-D
    arrays bring their channels, exactly as in a pipeline)."""
    return clone(scaler).fit(X)


def pixel_dtype(X):
    """X (n, d) in a dtype the core reads: its own where the core has it, else converted
    without changing a value (bool and float16 to float32; wider floats to float64, the
    precision PixelScaler computes in), C-contiguous either way."""
    if X.dtype in _CORE_DTYPES and X.dtype.isnative:
        return np.ascontiguousarray(X)
    if X.dtype.kind == "b" or (X.dtype.kind == "f" and X.dtype.itemsize <= 4):
        return np.ascontiguousarray(X, dtype=np.float32)
    if X.dtype.kind in "iu":  # a non-native byte order: same values, native order
        return np.ascontiguousarray(X, dtype=X.dtype.newbyteorder("="))
    return np.ascontiguousarray(X, dtype=np.float64)


def pixel_input(X, scaler):
    """X (n, d) for the core, scaled by the fitted ``scaler`` while gathered.

    Raises ValueError, as ``PixelScaler.transform`` does, when a pixel would scale
    beyond the float32 range.
    """
    X = pixel_dtype(X)
    if scaler.n_features_in_ != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, but the input scaler was fitted on "
                         f"{scaler.n_features_in_} features.")
    offset = np.ascontiguousarray(scaler.offset_, dtype=np.float64)
    scale = np.ascontiguousarray(scaler.scale_, dtype=np.float64)
    channels_last = scaler.channel_axis == -1
    _check_float32_range(X, offset, scale, channels_last)
    return _core.PixelInput(X, offset=offset, scale=scale, channels_last=channels_last)


def _check_float32_range(X, offset, scale, channels_last):
    """ValueError if some pixel of X scales beyond +-FLT_MAX (in float64, as PixelScaler
    judges). Integer data are cleared by their dtype's range alone, without reading X;
    floats by X's smallest and largest value per statistic."""
    if X.dtype.kind in "iu" and _integers_fit(X.dtype.str, offset.tobytes(), scale.tobytes()):
        return
    if X.size == 0:
        return
    lo, hi = _extremes(X, offset.shape[0], channels_last)
    peak = _peak(lo, hi, offset, scale)
    if peak > _FLOAT32_MAX:
        raise ValueError(
            f"input_scaler: some pixel scales to {peak:.3g}, beyond the float32 range "
            f"(+-{_FLOAT32_MAX:.3g}); the data are far outside the range the scaler was set "
            "up or fitted for (check max_value, or fit on data like this)")


@functools.lru_cache(maxsize=64)
def _integers_fit(dtype, offset, scale):
    """Whether every value of the integer ``dtype`` scales within +-FLT_MAX by the affine
    (offset and scale as float64 bytes): what the range check of integers depends on,
    remembered: prediction asks it again at every call (a third of a one-image call)."""
    info = np.iinfo(np.dtype(dtype))
    offset, scale = np.frombuffer(offset), np.frombuffer(scale)
    lo, hi = np.full_like(offset, float(info.min)), np.full_like(offset, float(info.max))
    return _peak(lo, hi, offset, scale) <= _FLOAT32_MAX


def _peak(lo, hi, offset, scale):
    with np.errstate(over="ignore"):
        return float(np.max(np.maximum(np.abs(lo - offset), np.abs(hi - offset)) / scale))


def _extremes(X, n_stats, channels_last):
    """Per-statistic min and max of X (n, d) as float64 (S,), read without a copy."""
    n, d = X.shape
    if n_stats == 1:
        view, axes = X, None
    elif channels_last:
        view, axes = X.reshape(n, d // n_stats, n_stats), (0, 1)
    else:
        view, axes = X.reshape(n, n_stats, d // n_stats), (0, 2)
    lo = np.asarray(view.min(axis=axes), dtype=np.float64).reshape(-1)
    hi = np.asarray(view.max(axis=axes), dtype=np.float64).reshape(-1)
    return lo, hi
