"""The IDX array format: :func:`read_idx` and :func:`write_idx`.

IDX is the simple array format the four Fashion-MNIST and MNIST files are shipped in.
Every IDX element type is supported, in any number of dimensions, gzip-compressed or raw.
Raw files are memory-mapped, never copied; every header is checked against the file's
real length before any memory is allocated, and every malformation is a ``ValueError``
that says what is wrong and at which byte. Both functions are also importable from
:mod:`fastmlp.datasets`.

IDX in brief (all integers big-endian)::

    byte 0-1    0x00 0x00
    byte 2      element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte 3      number of dimensions, ndim
    byte 4...   ndim sizes, one uint32 each
    then        the elements in C order, big-endian, prod(sizes) * itemsize bytes

fastmlp reads and writes arrays with 1 to 32 dimensions, each of size 1 to 2**32 - 1.
0-d arrays (a header with ``ndim == 0``) and empty arrays (a size of 0) are refused: no IDX
producer writes them, and a header of zeros is far more often damage than intent.
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np
from numpy.typing import ArrayLike

from ._atomic import atomic_file

__all__ = ["read_idx", "write_idx"]

# IDX element type code -> big-endian NumPy dtype.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# (kind, itemsize) -> IDX type code, for writing arrays of either byte order.
_IDX_CODES = {(dt.kind, dt.itemsize): code for code, dt in _IDX_TYPES.items()}
_MAX_NDIM = 32
_MAX_DIM = 2**32 - 1
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than 1032:1, so a gzip file of n bytes holds at most
# about 1032 * n bytes; a header claiming more is refused before anything is allocated.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 20  # decompressed bytes per step
_IN_CHUNK = 1 << 16  # compressed bytes read per step


def _type_list():
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in _IDX_TYPES.items())


class _RawSource:
    """Sequential reader of an uncompressed file, with the byte offset for messages."""

    def __init__(self, f):
        self._f = f
        self.offset = 0

    def read(self, n):
        data = self._f.read(n)
        self.offset += len(data)
        return data


# zlib's words for damage found in a gzip trailer, said plainly.
_ZLIB_PROBLEMS = {
    "incorrect data check": "CRC-32 mismatch (incorrect data check): the data is damaged",
    "incorrect length check": "length mismatch in the gzip trailer (incorrect length check)",
}


class _GzipSource:
    """Sequential reader of a gzip file that never decompresses more than asked for.

    zlib checks each member's CRC-32 and length when its trailer is reached; a stream that
    ends early, corrupt deflate data and bytes after the last member are ``ValueError``.
    ``offset`` counts decompressed bytes; messages also give the compressed position.
    """

    def __init__(self, f, path):
        self._f = f
        self._path = path
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._fed = 0  # compressed bytes read from the file so far
        self.offset = 0

    def _compressed_pos(self):
        if self._d.eof:
            return self._fed - len(self._d.unused_data)
        return self._fed - len(self._d.unconsumed_tail)

    def _next_input(self):
        # At the end of a member, zlib may leave the same leftover bytes in both
        # unused_data and unconsumed_tail: unused_data is the one that counts.
        if self._d.eof:
            rest = self._d.unused_data
            if not rest:
                rest = self._f.read(_IN_CHUNK)
                self._fed += len(rest)
            if not rest:
                return b"", True  # clean end of the last member
            if not rest.startswith(_GZIP_MAGIC[: len(rest)]):
                pos = self._fed - len(rest)
                raise ValueError(
                    f"corrupt gzip file {self._path}: unexpected bytes after the end of the "
                    f"gzip stream at compressed byte offset {pos}"
                )
            # Another member follows (concatenated gzip files are one stream).
            self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            return rest, False
        if self._d.unconsumed_tail:
            return self._d.unconsumed_tail, False
        data = self._f.read(_IN_CHUNK)
        self._fed += len(data)
        if not data:
            raise ValueError(
                f"corrupt gzip file {self._path}: the compressed stream is truncated "
                f"(it ends at compressed byte offset {self._fed} before the end-of-stream "
                f"marker, after {self.offset} decompressed bytes)"
            )
        return data, False

    def read(self, n):
        """Up to n decompressed bytes; fewer only at the end of the stream."""
        out = bytearray()
        while len(out) < n:
            data, at_end = self._next_input()
            if at_end:
                break
            try:
                out += self._d.decompress(data, n - len(out))
            except zlib.error as exc:
                problem = str(exc).split(": ", 1)[-1]
                problem = _ZLIB_PROBLEMS.get(problem, problem)
                raise ValueError(
                    f"corrupt gzip file {self._path}: {problem} (near compressed byte offset "
                    f"{self._compressed_pos()})"
                ) from None
        self.offset += len(out)
        return bytes(out)

    def readinto_growing(self, nbytes):
        """Exactly up to nbytes into a bytearray that grows only as data really arrives."""
        buf = bytearray()
        while len(buf) < nbytes:
            chunk = self.read(min(_CHUNK, nbytes - len(buf)))
            if not chunk:
                break
            buf += chunk
        return buf


def _read_header(src, path, where):
    """(dtype, shape, header_length) after checking the magic, type code and sizes.

    ``where`` qualifies byte offsets in messages: "" for raw files, " (decompressed)" for
    offsets into the decompressed stream of a gzip file.
    """
    head = src.read(4)
    if len(head) < 4:
        raise ValueError(
            f"{path} is too short to be an IDX file: the 4-byte magic number is truncated "
            f"(the data ends at byte offset {len(head)}{where})"
        )
    if head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"bad magic number in {path}: bytes 0-1{where} must be 0x00 0x00, found "
            f"0x{head[0]:02X} 0x{head[1]:02X} (is this an IDX file?)"
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_TYPES:
        raise ValueError(
            f"unknown IDX element type code 0x{code:02X} at byte offset 2{where} of {path}; "
            f"known codes are {_type_list()}"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(
            f"invalid number of dimensions {ndim} at byte offset 3{where} of {path}; "
            f"fastmlp reads IDX files with 1 to {_MAX_NDIM} dimensions"
        )
    raw_sizes = src.read(4 * ndim)
    if len(raw_sizes) < 4 * ndim:
        raise ValueError(
            f"{path} is truncated in its header: {ndim} dimension sizes need bytes 4 to "
            f"{4 + 4 * ndim - 1}{where}, but the data ends at byte offset "
            f"{4 + len(raw_sizes)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw_sizes, dtype=">u4"))
    for axis, size in enumerate(shape):
        if size == 0:
            raise ValueError(
                f"dimension {axis} at byte offset {4 + 4 * axis}{where} of {path} is 0; "
                f"every IDX dimension must be at least 1"
            )
    return _IDX_TYPES[code], shape, 4 + 4 * ndim


def _describe(dtype, shape):
    nbytes = math.prod(shape) * dtype.itemsize
    return f"shape {shape} of {dtype.name} ({nbytes} bytes of data)"


def read_idx(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a NumPy array.

    Compression is detected from the content (the gzip magic bytes ``1f 8b``), never from
    the file name. The header is checked against the file's real length before anything
    is allocated.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    mmap : bool, default=True
        For raw (uncompressed) files: return a read-only :class:`numpy.memmap` of the
        file instead of reading it into memory. Ignored for gzip files, which are always
        decompressed into memory.

    Returns
    -------
    array : ndarray
        The data with the file's shape and element type. A raw file read with
        ``mmap=True`` is a read-only ``np.memmap`` in the file's byte order: big-endian
        (``>i2``, ``>i4``, ``>f4``, ``>f8``) for the multi-byte types, which NumPy computes
        with transparently; ``a.astype(a.dtype.newbyteorder("="))`` gives native order.
        uint8 and int8 have no byte order, so such a map is the file itself, zero-copy.
        Gzip files, and raw files read with ``mmap=False``, give a writable array in
        native byte order.

    Raises
    ------
    ValueError
        If the file is not a well-formed IDX file: bad magic number, unknown type code,
        zero or too many dimensions, a dimension of size 0, truncated header or data,
        trailing bytes, or corrupt gzip data (bad CRC, truncated or damaged stream). The
        message names the problem and its byte offset. Trailing data in a gzip file is
        found after inflating at most 1 MiB past the declared size.
    OSError
        If the file cannot be opened or read.

    See Also
    --------
    write_idx : the inverse.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastmlp.datasets import read_idx, write_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
    >>> write_idx(path, np.array([9, 0, 0, 3], dtype=np.uint8))
    >>> read_idx(path)
    array([9, 0, 0, 3], dtype=uint8)
    """
    path = os.fspath(path)
    # Opening a FIFO waits for a writer, and a device never ends: regular files only.
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):
        raise OSError(f"{path} is not a regular file")
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        is_gzip = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if is_gzip:
            return _read_gzip(f, path, file_size)
        dtype, shape, header_len = _read_header(_RawSource(f), path, "")
        nbytes = math.prod(shape) * dtype.itemsize
        expected = header_len + nbytes
        if file_size < expected:
            raise ValueError(
                f"truncated data in {path}: the header claims {_describe(dtype, shape)} "
                f"from byte offset {header_len}, so the file should have {expected} bytes, "
                f"but it has {file_size} (only {file_size - header_len} bytes of data)"
            )
        if file_size > expected:
            raise ValueError(
                f"trailing bytes in {path}: the header claims {_describe(dtype, shape)}, so "
                f"the data should end at byte offset {expected}, but the file has "
                f"{file_size} bytes ({file_size - expected} extra)"
            )
        if not mmap:
            arr = np.fromfile(f, dtype=dtype, count=math.prod(shape), offset=0)
            return _to_native(arr).reshape(shape)
    return np.memmap(path, dtype=dtype, mode="r", offset=header_len, shape=shape)


def _read_gzip(f, path, file_size):
    src = _GzipSource(f, path)
    where = " (decompressed)"
    dtype, shape, header_len = _read_header(src, path, where)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _MAX_DEFLATE_RATIO * file_size:
        raise ValueError(
            f"impossible header in {path}: it claims {_describe(dtype, shape)}, more than "
            f"a gzip file of {file_size} bytes can hold (at most {_MAX_DEFLATE_RATIO} times "
            f"its size); the dimension sizes at byte offsets 4 to {header_len - 1} "
            f"(decompressed) are damaged or the file is truncated"
        )
    buf = src.readinto_growing(nbytes)
    if len(buf) < nbytes:
        raise ValueError(
            f"truncated data in {path}: the header claims {_describe(dtype, shape)} from "
            f"byte offset {header_len} (decompressed), but the gzip stream ends after "
            f"{len(buf)} bytes of data, at byte offset {header_len + len(buf)} (decompressed)"
        )
    # Read on to the end of the stream: that is where the CRC is checked. Any
    # decompressed byte past the data is an error, so at most one chunk more is inflated
    # (to say how much follows when it is little): trailing data of any length is
    # rejected at once, never decompressed whole.
    extra = len(src.read(_CHUNK + 1))
    if extra:
        more = f"{extra}" if extra <= _CHUNK else f"more than {_CHUNK}"
        raise ValueError(
            f"trailing bytes in {path}: the header claims {_describe(dtype, shape)}, so the "
            f"data should end at byte offset {header_len + nbytes} (decompressed), but "
            f"{more} more bytes follow"
        )
    arr = np.frombuffer(buf, dtype=dtype)
    return _to_native(arr).reshape(shape)


def _to_native(arr):
    """arr in native byte order, swapped in place when it is writable."""
    if arr.dtype.isnative:
        return arr
    native = arr.dtype.newbyteorder("=")
    if arr.flags.writeable:
        return arr.byteswap(inplace=True).view(native)
    return arr.astype(native)


def write_idx(path: str | os.PathLike, array: ArrayLike, *,
              compress: bool | None = None) -> None:
    """Write an array to an IDX file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. It is replaced atomically: the data is written to a temporary file in
        the same directory which is renamed over ``path`` only once complete, so readers
        never see a half-written file and a failure leaves ``path`` as it was. An existing
        file keeps its permission bits; anything but a regular file there (a FIFO, a
        device, a directory) is refused.
    array : array_like
        Data with 1 to 32 dimensions, each of size 1 to 2**32 - 1. A NumPy array is
        written in its own dtype, which must be uint8, int8, int16, int32, float32 or
        float64 (either byte order). Other input (nested lists, a pandas frame) is
        written in the smallest of those element types that holds each value exactly:
        whole numbers (and booleans) in uint8, int8, int16 or int32 where they fit, else
        in float32 or float64; other numbers in float32, or float64 where float32 would
        round them.
    compress : bool or None, default=None
        Whether to gzip the file. None compresses when ``path`` ends with ``.gz``.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code (or, for input other than a NumPy array, no
        IDX element type holds its values exactly), or the array is a masked array (IDX
        has no mask).
    ValueError
        If the array is ragged (a nested sequence whose rows differ in length), 0-d, has
        more than 32 dimensions, or a dimension of size 0 or at least 2**32, or if the file
        could not fit in the free space of its file system.
    OSError
        If ``path`` exists and is not a regular file, or cannot be written.

    See Also
    --------
    read_idx : the inverse.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastmlp.datasets import read_idx, write_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "images-idx3-ubyte")
    >>> write_idx(path, np.zeros((2, 28, 28), dtype=np.uint8))
    >>> os.path.getsize(path)  # 16 bytes of header, then the pixels
    1584
    >>> read_idx(path).shape
    (2, 28, 28)
    """
    path = os.fspath(path)
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(
            "write_idx: IDX files have no mask, so a masked array would lose it; write "
            "array.filled(value) to store a fill value in the masked places, or array.data "
            "to store what lies under the mask"
        )
    try:
        arr = np.asarray(array)
    except ValueError:  # NumPy cannot make an array of a ragged nested sequence
        raise ValueError(
            "write_idx: the array is ragged (its nested sequences differ in length, e.g. "
            "[[1, 2], [3]]); an IDX file holds an array of one shape, so give every row "
            "the same length") from None
    if not isinstance(array, (np.ndarray, np.generic)):
        # A list's dtype is NumPy's guess (int64 for [[1, 2]]), which IDX has no type
        # for; an array's dtype is the caller's choice, and stays as it is.
        arr = _smallest_exact(arr)
    code = _check_writable(arr)
    if compress is None:
        compress = path.endswith(".gz")
    elif not isinstance(compress, (bool, np.bool_)):
        raise TypeError(f"compress must be True, False or None, got {compress!r}")
    big = _IDX_TYPES[code]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    _check_room(path, len(header) + math.prod(arr.shape) * big.itemsize, compress)
    with atomic_file(path) as f:
        deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compress else None

        def put(data):
            f.write(deflate.compress(data) if deflate else data)

        put(header)
        for block in _c_order_blocks(arr, _CHUNK):
            put(block.astype(big, copy=False).tobytes())
        if deflate:
            f.write(deflate.flush())


def _smallest_exact(arr):
    """arr in the smallest IDX element type that holds each of its values exactly (see
    write_idx); as it is when it holds no numbers, or nothing."""
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return arr
    if arr.dtype.kind in "biu":
        low, high = int(arr.min()), int(arr.max())
        for t in (np.uint8, np.int8, np.int16, np.int32):
            if np.iinfo(t).min <= low and high <= np.iinfo(t).max:
                return arr.astype(t)
    for t in (np.float32, np.float64):
        with np.errstate(over="ignore", invalid="ignore"):
            cast = arr.astype(t)
            back = cast.astype(arr.dtype)  # compared in arr's own type: exactly
        if np.array_equal(back, arr, equal_nan=arr.dtype.kind == "f"):
            return cast
    raise TypeError(
        f"write_idx: no IDX element type holds these values exactly (they run from "
        f"{arr.min()} to {arr.max()}); to store them rounded, give a NumPy array of one "
        f"of {', '.join(dt.name for dt in _IDX_TYPES.values())}, e.g. "
        f"np.asarray(values, dtype=np.float64)")


def _check_writable(arr):
    """The IDX type code of arr, after checking its dtype, dimensions and sizes."""
    code = _IDX_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"write_idx: dtype {arr.dtype} has no IDX element type; use one of "
            f"{', '.join(dt.name for dt in _IDX_TYPES.values())}"
        )
    if not 1 <= arr.ndim <= _MAX_NDIM:
        raise ValueError(
            f"write_idx: IDX arrays have 1 to {_MAX_NDIM} dimensions, got a {arr.ndim}-d array"
        )
    for axis, size in enumerate(arr.shape):
        if not 1 <= size <= _MAX_DIM:
            raise ValueError(
                f"write_idx: dimension {axis} has size {size}; IDX sizes must be between 1 "
                f"and {_MAX_DIM}"
            )
    return code


def _check_room(path, nbytes, compress):
    """Refuse, before writing a byte, a file that cannot fit on its file system.

    A broadcast view can describe exabytes with a few bytes of memory; writing it would
    run until the disk is full. A gzip file can be up to 1032 times smaller than its data,
    so compressed output is refused only beyond that.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fs = os.statvfs(directory)
    except (OSError, AttributeError):  # no such directory (open will say so), or Windows
        return
    if fs.f_blocks == 0:  # some network and FUSE file systems report no sizes
        return
    free = fs.f_bavail * fs.f_frsize
    room = free * _MAX_DEFLATE_RATIO if compress else free
    if nbytes > room:
        how = f"even gzip-compressed at deflate's best ratio of {_MAX_DEFLATE_RATIO}:1, " if (
            compress) else ""
        raise ValueError(
            f"write_idx: the IDX file would hold {nbytes} bytes, which {how}cannot fit in "
            f"the {free} bytes free on the file system of {directory}; write a smaller "
            f"array or choose another place"
        )


def _c_order_blocks(arr, nbytes):
    """arr's elements in C order, as arrays of about ``nbytes`` or less each.

    Never copies arr as a whole: a non-contiguous array (a slice, a transpose, a
    broadcast view) is cut along its leading axes first.
    """
    if arr.flags.c_contiguous:
        flat = arr.reshape(-1)
        step = max(1, nbytes // arr.itemsize)
        for start in range(0, flat.size, step):
            yield flat[start : start + step]
    elif arr.ndim == 1 or arr[0].nbytes <= nbytes:
        rows = max(1, nbytes // max(1, arr[0].nbytes))
        for start in range(0, len(arr), rows):
            yield arr[start : start + rows]
    else:
        for sub in arr:
            yield from _c_order_blocks(sub, nbytes)
