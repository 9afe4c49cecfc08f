"""A .npy header's declared size, checked before NumPy reads the data: NumPy allocates
the bytes a header declares before it reads them, so a damaged shape in a model file or
an image stack asked for hundreds of GiB (a MemoryError, not a word about the file)."""

from __future__ import annotations

import math

import numpy as np

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def declared_and_held(f, size):
    """(bytes the header declares, bytes after the header) of the .npy data open in f at
    its start, ``size`` bytes in all; None where the data size is not shape x itemsize
    (object arrays, which fastmlp refuses anyway) or the format is one NumPy reads
    itself (3.0). A header NumPy cannot parse raises as ``np.load`` would."""
    version = np.lib.format.read_magic(f)
    if version not in _HEADER_READERS:
        return None
    shape, _, dtype = _HEADER_READERS[version](f)
    if dtype.hasobject:
        return None
    return math.prod(shape) * dtype.itemsize, size - f.tell()
