"""IDX files and the Fashion-MNIST / MNIST data sets.

Two layers, used separately or together:

* :func:`read_idx` and :func:`write_idx` read and write the IDX format, the simple
  array format the four Fashion-MNIST and MNIST files are shipped in. Every IDX element
  type is supported, in any number of dimensions, gzip-compressed or raw. Raw files are
  memory-mapped, never copied; every header is checked against the file's real length
  before any memory is allocated, and every malformation is a ``ValueError`` that says
  what is wrong and at which byte.
* :func:`load_fashion_mnist` and :func:`load_mnist` find the four files of a data set on
  this machine (or download them when asked), check them, and return a scikit-learn
  :class:`~sklearn.utils.Bunch` with the training and test splits.

Where the loaders look, in order (the first directory holding all four files wins):

1. ``data_home``, the argument: the files directly in it, or in ``data_home/<name>``;
2. the directory named by the environment variable ``FASTMLP_DATA`` (same rule);
3. ``/usr/share/datasets/<name>``, where Debian's and Ubuntu's ``dataset-fashion-mnist``
   package installs Fashion-MNIST;
4. the user cache, ``$XDG_CACHE_HOME/fastmlp/<name>`` (``~/.cache/fastmlp/<name>`` when
   ``XDG_CACHE_HOME`` is unset),

where ``<name>`` is ``fashion-mnist`` or ``mnist``. Downloads (only with ``download=True``)
go to ``data_home/<name>``, or to the user cache when ``data_home`` is not given; each file
is checked against the MD5 sums in :data:`CHECKSUMS` before it is moved into place.

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

import contextlib
import hashlib
import http.client
import math
import os
import secrets
import sys
import textwrap
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
from sklearn.utils import Bunch

__all__ = [
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "load_mnist",
    "CHECKSUMS",
    "SYSTEM_DATA_DIRS",
]

# --------------------------------------------------------------------------------------
# IDX format

# IDX element type code -> big-endian NumPy dtype.
_IDX_TYPES = {
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
# A new binary file, failing if the name exists (temporary names are random).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


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


def read_idx(path, *, mmap=True):
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
        message names the problem and its byte offset.
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
    # Read on to the end of the stream: that is where the CRC is checked, and any
    # decompressed byte past the data is an error.
    extra = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        extra += len(chunk)
    if extra:
        raise ValueError(
            f"trailing bytes in {path}: the header claims {_describe(dtype, shape)}, so the "
            f"data should end at byte offset {header_len + nbytes} (decompressed), but "
            f"{extra} more bytes follow"
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


@contextlib.contextmanager
def _atomic_file(path):
    """A binary file object whose content replaces ``path`` only if the block succeeds.

    The data goes to a hidden temporary file in the same directory (so the final
    ``os.replace`` is atomic); it is flushed to disk first, and deleted on any failure.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, _NEW_FILE_FLAGS, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_idx(path, array, *, compress=None):
    """Write an array to an IDX file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. It is replaced atomically: the data is written to a temporary file in
        the same directory which is renamed over ``path`` only once complete, so readers
        never see a half-written file and a failure leaves ``path`` as it was.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64 (either byte order),
        with 1 to 32 dimensions, each of size 1 to 2**32 - 1.
    compress : bool or None, default=None
        Whether to gzip the file. None compresses when ``path`` ends with ``.gz``.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array is 0-d, has more than 32 dimensions, or a dimension of size 0 or at
        least 2**32.

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
    arr = np.asarray(array)
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
    if compress is None:
        compress = path.endswith(".gz")
    big = _IDX_TYPES[code]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    flat = arr.reshape(-1)  # a copy only when arr is not contiguous
    step = max(1, _CHUNK // big.itemsize)
    with _atomic_file(path) as f:
        deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compress else None

        def put(data):
            f.write(deflate.compress(data) if deflate else data)

        put(header)
        for start in range(0, flat.size, step):
            put(flat[start : start + step].astype(big, copy=False).tobytes())
        if deflate:
            f.write(deflate.flush())


# --------------------------------------------------------------------------------------
# Data sets

#: Published MD5 sums of the downloadable files, by data set and file name. Downloads are
#: checked against this table (tests replace entries to serve their own files). Files found
#: on disk are not checksummed: distributions may recompress them; their content is
#: validated when read.
CHECKSUMS = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}

#: System-wide directories searched (as ``<dir>/<name>``) after ``data_home`` and
#: ``$FASTMLP_DATA`` and before the user cache.
SYSTEM_DATA_DIRS = ("/usr/share/datasets",)

# Role -> original file name (the compressed one; the same name without .gz is accepted).
_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_IMAGE_SHAPE = (28, 28)

_DATASETS = {
    "fashion-mnist": {
        "title": "Fashion-MNIST",
        "function": "load_fashion_mnist",
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "apt": "dataset-fashion-mnist",
        "target_names": (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        "what": (
            "Grayscale images of clothing articles (tops, trousers, shoes, bags, ...), one "
            "article per image, centred, 28x28 pixels, pixel values 0 (background) to 255, "
            "in ten classes of equal size. A drop-in replacement for MNIST that is harder "
            "to classify."
        ),
    },
    "mnist": {
        "title": "MNIST",
        "function": "load_mnist",
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "apt": None,
        "target_names": tuple(str(d) for d in range(10)),
        "what": (
            "Grayscale images of handwritten digits 0-9, size-normalised and centred, "
            "28x28 pixels, pixel values 0 (background) to 255."
        ),
    },
}


def _candidates(name):
    """The file names accepted for one original file: raw first (it is memory-mapped)."""
    return (name[: -len(".gz")], name)


def _cache_home():
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification says relative paths are to be ignored.
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastmlp")


def _search_dirs(key, data_home):
    """[(directory, origin)] in lookup order."""
    dirs = []
    if data_home is not None:
        home = os.path.expanduser(os.fspath(data_home))
        dirs += [(home, "data_home"), (os.path.join(home, key), "data_home")]
    env = os.environ.get("FASTMLP_DATA", "")
    if env:
        env = os.path.expanduser(env)
        dirs += [(env, "$FASTMLP_DATA"), (os.path.join(env, key), "$FASTMLP_DATA")]
    dirs += [(os.path.join(d, key), "system") for d in SYSTEM_DATA_DIRS]
    dirs.append((os.path.join(_cache_home(), key), "user cache"))
    return dirs


def _files_in(directory):
    """({role: path}, [missing original names]) for one directory."""
    found, missing = {}, []
    for role, name in _FILES.items():
        for candidate in _candidates(name):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                found[role] = path
                break
        else:
            missing.append(name)
    return found, missing


def _not_found_message(key, data_home, searched):
    spec = _DATASETS[key]
    fn = spec["function"]
    names = list(_FILES.values())
    lines = [
        f"{spec['title']} was not found. fastmlp looks for the four files "
        f"{', '.join(names[:3])} and {names[3]} (or the same names without .gz) in:"
    ]
    if data_home is None:
        lines.append("  - data_home: not given")
    if not os.environ.get("FASTMLP_DATA"):
        lines.append("  - $FASTMLP_DATA: not set")
    for directory, origin, missing in searched:
        if not os.path.isdir(directory):
            state = "does not exist"
        elif len(missing) == len(_FILES):
            state = "no data files"
        else:
            state = "incomplete, missing " + ", ".join(missing)
        lines.append(f"  - {directory} ({origin}): {state}")
    target = _download_dir(key, data_home)
    lines.append("To get the data, do one of:")
    if spec["apt"]:
        lines.append(f"  - install the system package: sudo apt-get install {spec['apt']}")
    lines += [
        f"  - download it: fastmlp.datasets.{fn}(download=True) (saves to {target})",
        f"  - put the four files in a directory DIR and call {fn}(data_home=DIR), or "
        f"set the environment variable FASTMLP_DATA=DIR",
    ]
    return "\n".join(lines)


def _download_dir(key, data_home):
    if data_home is not None:
        return os.path.join(os.path.expanduser(os.fspath(data_home)), key)
    return os.path.join(_cache_home(), key)


def _progress(stream, name, done, total):
    width = 30
    if total:
        filled = min(width, width * done // total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"\r{name}: [{bar}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB"
    else:
        text = f"\r{name}: {done / 1e6:6.1f} MB"
    stream.write(text)
    stream.flush()


def _fetch(url, f, name, timeout, show_progress, function):
    """Stream url into the open file f; returns the MD5 hex digest of what was written.

    Every failure is an ``OSError`` whose message names the URL.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "fastmlp"})
    done, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            last = 0.0
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                if show_progress and time.monotonic() - last > 0.1:
                    last = time.monotonic()
                    _progress(sys.stderr, name, done, total)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error carries the open response
        raise OSError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise OSError(
            f"could not download {url}: {reason}. Check the network connection and "
            f"base_url, or get the files another way (see the message of {function}() "
            f"without download=True)"
        ) from exc
    finally:
        if show_progress:
            _progress(sys.stderr, name, done, total)
            sys.stderr.write("\n")
    if total is not None and done != total:
        raise OSError(f"download of {url} was cut short: received {done} of {total} bytes")
    return md5.hexdigest()


def _download(key, target, base_url, timeout, verbose):
    """Fetch the missing files into target: all of them land, or none does.

    Each file is streamed to a hidden temporary file in ``target`` and its MD5 checked;
    only when every file is complete and correct are they renamed into place. On any
    failure the temporary files (and directories this call created) are removed.
    """
    spec = _DATASETS[key]
    base = (base_url if base_url is not None else spec["url"]).rstrip("/") + "/"
    checksums = CHECKSUMS[key]
    show_progress = sys.stderr.isatty() if verbose is None else bool(verbose)
    created = []
    d = os.path.abspath(target)
    while not os.path.isdir(d):
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(target, exist_ok=True)
    _, missing = _files_in(target)
    pending = []  # (temporary path, final path)
    try:
        for name in missing:
            url = base + name
            tmp = os.path.join(target, f".{name}.{secrets.token_hex(4)}.part")
            pending.append((tmp, os.path.join(target, name)))
            fd = os.open(tmp, _NEW_FILE_FLAGS, 0o666)
            with os.fdopen(fd, "wb") as f:
                digest = _fetch(url, f, name, timeout, show_progress, spec["function"])
                f.flush()
                os.fsync(f.fileno())
            expected = checksums.get(name)
            if expected is not None and digest != expected:
                raise OSError(
                    f"checksum mismatch for {url}: MD5 {digest}, expected {expected}; the "
                    f"download is corrupt or the mirror has changed, and nothing was saved"
                )
        for tmp, final in pending:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for d in created:  # innermost first; only directories left empty
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise


def _load(key, data_home, download, return_X_y, base_url, timeout, verbose):
    spec = _DATASETS[key]
    searched = []
    files = None
    for directory, origin in _search_dirs(key, data_home):
        found, missing = _files_in(directory)
        searched.append((directory, origin, missing))
        if not missing:
            files = found
            break
    if files is None:
        if not download:
            raise FileNotFoundError(_not_found_message(key, data_home, searched))
        target = _download_dir(key, data_home)
        _download(key, target, base_url, timeout, verbose)
        files, _ = _files_in(target)
        origin = "downloaded"
    directory = os.path.dirname(files["train_images"])

    splits = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"])
        labels = read_idx(files[f"{split}_labels"])
        _check_split(images, labels, files[f"{split}_images"], files[f"{split}_labels"])
        splits[split] = (images, images.reshape(len(images), -1), labels.astype(np.int64))
    (images, data, target), (images_test, data_test, target_test) = (
        splits["train"],
        splits["test"],
    )
    if return_X_y:
        return data, target, data_test, target_test

    target_names = np.asarray(spec["target_names"])
    counts = np.bincount(target, minlength=10)
    classes = "\n".join(
        f"  {i}  {name:<12} {counts[i]:>6} training images" for i, name in enumerate(target_names)
    )
    descr = "\n".join(
        [
            f"{spec['title']}",
            "=" * len(spec["title"]),
            "",
            textwrap.fill(spec["what"], 88),
            "",
            f"Training set: {len(target)} images; test set: {len(target_test)} images.",
            f"Each image is {_IMAGE_SHAPE[0]}x{_IMAGE_SHAPE[1]} uint8 pixels (0-255) in "
            f"`images`, flattened row by row into {data.shape[1]} features in `data`.",
            f"Classes (target: name):\n{classes}",
            "",
            f"Files read from {directory} ({origin}):",
            *(f"  {files[role]}" for role in _FILES),
        ]
    )
    rows, cols = _IMAGE_SHAPE
    return Bunch(
        data=data,
        images=images,
        target=target,
        data_test=data_test,
        images_test=images_test,
        target_test=target_test,
        target_names=target_names,
        feature_names=[f"pixel_{r}_{c}" for r in range(rows) for c in range(cols)],
        DESCR=descr,
        filenames=dict(files),
    )


def _check_split(images, labels, images_path, labels_path):
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise ValueError(
            f"{images_path} does not hold {_IMAGE_SHAPE[0]}x{_IMAGE_SHAPE[1]} uint8 "
            f"images: it holds {_describe(images.dtype, images.shape)}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path} does not hold a 1-d array of uint8 labels: it holds "
            f"{_describe(labels.dtype, labels.shape)}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.max() > 9:
        raise ValueError(f"{labels_path} holds label {int(labels.max())}; labels must be 0 to 9")


def load_fashion_mnist(
    data_home=None,
    *,
    download=False,
    return_X_y=False,
    base_url=None,
    timeout=60,
    verbose=None,
):
    """Load Fashion-MNIST: 60000 training and 10000 test images, 28x28, 10 classes.

    Grayscale images of clothing articles, one per image, centred, pixel values 0
    (background) to 255, in ten classes of equal size: 0 T-shirt/top, 1 Trouser,
    2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.

    The four original files ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same names
    without ``.gz``) are looked for in this order, the first directory holding all four
    winning:

    1. ``data_home``, directly or in ``data_home/fashion-mnist``;
    2. ``$FASTMLP_DATA``, directly or in ``$FASTMLP_DATA/fashion-mnist``;
    3. ``/usr/share/datasets/fashion-mnist``, where ``apt-get install
       dataset-fashion-mnist`` puts them;
    4. the user cache, ``$XDG_CACHE_HOME/fastmlp/fashion-mnist`` (by default
       ``~/.cache/fastmlp/fashion-mnist``).

    Raw files are memory-mapped read-only; gzip files are decompressed into memory. Files
    found on disk are validated (see :func:`read_idx`) but not checksummed, since
    distributions may recompress them.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        A directory searched first; downloads go to ``data_home/fashion-mnist``.
    download : bool, default=False
        When the data set is found nowhere, fetch the missing files from ``base_url`` into
        ``data_home/fashion-mnist`` (or the user cache when ``data_home`` is None). Each
        file is streamed to a temporary file in that directory and its MD5 sum checked
        against :data:`CHECKSUMS`; only when all are complete and correct are they renamed
        into place. Without ``download``, a missing data set raises ``FileNotFoundError``.
    return_X_y : bool, default=False
        Return the tuple ``(X_train, y_train, X_test, y_test)`` instead of a Bunch.
    base_url : str, optional
        The mirror to download from; by default
        ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/``.
    timeout : float, default=60
        Seconds to wait for the server at each network operation.
    verbose : bool or None, default=None
        Show a download progress bar on stderr; None shows it when stderr is a terminal.

    Returns
    -------
    dataset : sklearn.utils.Bunch
        With the keys

        data : ndarray of uint8, shape (n_train, 784)
            The training images, each flattened row by row.
        images : ndarray of uint8, shape (n_train, 28, 28)
            The same pixels as ``data`` (the two share memory).
        target : ndarray of int64, shape (n_train,)
            Class indices 0 to 9.
        data_test, images_test, target_test : ndarray
            The test split, likewise (n_test = 10000).
        target_names : ndarray of str, shape (10,)
            Class names, so that ``target_names[target]`` names each image.
        feature_names : list of str
            ``"pixel_<row>_<column>"`` for the 784 columns of ``data``.
        DESCR : str
            What the data is, its sizes, the classes and the files read.
        filenames : dict of str
            The path of each file read, under ``"train_images"``, ``"train_labels"``,
            ``"test_images"`` and ``"test_labels"``.
    (X_train, y_train, X_test, y_test) : tuple of ndarray
        With ``return_X_y=True``: ``data``, ``target``, ``data_test``, ``target_test``.

    Raises
    ------
    FileNotFoundError
        If the data set is found nowhere and ``download`` is False. The message lists the
        places searched and the ways to get the data.
    OSError
        If a download fails: network error, HTTP error, transfer cut short, or checksum
        mismatch. Nothing is left behind in the target directory.
    ValueError
        If a file is malformed (see :func:`read_idx`), the images are not 28x28 uint8,
        images and labels differ in number, or a label is above 9.

    See Also
    --------
    load_mnist : the handwritten digits, in the same format.

    Examples
    --------
    >>> from fastmlp.datasets import load_fashion_mnist
    >>> ds = load_fashion_mnist()  # doctest: +SKIP
    >>> ds.data.shape, ds.data_test.shape  # doctest: +SKIP
    ((60000, 784), (10000, 784))
    >>> str(ds.target_names[ds.target[0]])  # doctest: +SKIP
    'Ankle boot'
    >>> X_train, y_train, X_test, y_test = load_fashion_mnist(return_X_y=True)  # doctest: +SKIP
    """
    return _load("fashion-mnist", data_home, download, return_X_y, base_url, timeout, verbose)


def load_mnist(
    data_home=None,
    *,
    download=False,
    return_X_y=False,
    base_url=None,
    timeout=60,
    verbose=None,
):
    """Load MNIST: 60000 training and 10000 test images of handwritten digits, 28x28.

    The same four file names, the same lookup order (with ``mnist`` in place of
    ``fashion-mnist``: ``data_home``, ``$FASTMLP_DATA``, ``/usr/share/datasets/mnist``,
    ``~/.cache/fastmlp/mnist``), the same parameters and the same result as
    :func:`load_fashion_mnist`. The classes are the digits, ``target_names`` is
    ``"0"`` to ``"9"``.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        A directory searched first; downloads go to ``data_home/mnist``.
    download : bool, default=False
        When the data set is found nowhere, fetch it (checksum-verified, atomically).
    return_X_y : bool, default=False
        Return ``(X_train, y_train, X_test, y_test)`` instead of a Bunch.
    base_url : str, optional
        The mirror; by default ``https://ossci-datasets.s3.amazonaws.com/mnist/``.
    timeout : float, default=60
        Seconds to wait for the server at each network operation.
    verbose : bool or None, default=None
        Download progress bar on stderr; None shows it when stderr is a terminal.

    Returns
    -------
    dataset : sklearn.utils.Bunch or tuple
        As for :func:`load_fashion_mnist`.

    Raises
    ------
    FileNotFoundError, OSError, ValueError
        As for :func:`load_fashion_mnist`.

    Examples
    --------
    >>> from fastmlp.datasets import load_mnist
    >>> X, y, X_test, y_test = load_mnist(download=True, return_X_y=True)  # doctest: +SKIP
    >>> X.shape, y[:5]  # doctest: +SKIP
    ((60000, 784), array([5, 0, 4, 1, 9]))
    """
    return _load("mnist", data_home, download, return_X_y, base_url, timeout, verbose)
