"""Memory layout of the arrays the compiled core reads and writes in place."""

import numpy as np

__all__ = ["cache_aligned"]


def cache_aligned(a):
    """A C-contiguous float32 copy of ``a`` whose data starts on a 64-byte cache line.

    The core splits the first layer's weights, biases and optimizer state between
    threads by columns; with every row starting on a cache line (widths that are
    multiples of 16), no line is written by two cores in the same batch.
    """
    a = np.asarray(a, dtype=np.float32)
    buf = np.empty(a.size + 16, dtype=np.float32)
    start = (-buf.ctypes.data % 64) // 4  # float32 buffers start 4-byte aligned
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out
