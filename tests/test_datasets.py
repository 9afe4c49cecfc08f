"""Tests of fastmlp.datasets: IDX round trips and malformed files, the loaders' lookup
order and validation, downloads against a local HTTP server, and the real Fashion-MNIST."""

import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import mmap
import os
import pathlib
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
import tracemalloc
import types
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import fashion_mnist_or_skip
from fastmlp import _idx, datasets
from fastmlp.datasets import load_fashion_mnist, load_mnist, read_idx, write_idx
from test_cli import run

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def gz(data):
    return gzip.compress(data, mtime=0)


def put(directory, name, content):
    path = pathlib.Path(directory) / name
    path.write_bytes(content)
    return path


def same_bits(a, b):
    """Same shape and values, bit for bit (NaN payloads and -0.0 included)."""
    native = np.asarray(a).dtype.newbyteorder("=")
    return (
        a.shape == b.shape
        and np.asarray(a, dtype=native).tobytes() == np.asarray(b, dtype=native).tobytes()
    )


# ---------------------------------------------------------------------------------------
# IDX round trips

idx_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
)


@settings(max_examples=60, deadline=None)
@given(arr=idx_arrays, compress=st.booleans(), use_mmap=st.booleans())
def test_round_trip_all_types_and_shapes(arr, compress, use_mmap):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "array.idx")  # the name says nothing about compression
        write_idx(path, arr, compress=compress)
        with open(path, "rb") as f:
            assert (f.read(2) == b"\x1f\x8b") == compress
        out = read_idx(path, mmap=use_mmap)
        assert same_bits(arr, out)
        assert out.dtype.newbyteorder("=") == arr.dtype.newbyteorder("=")
        if compress or not use_mmap:
            assert out.dtype.isnative and out.flags.writeable
            assert not isinstance(out, np.memmap)
        else:
            assert isinstance(out, np.memmap) and not out.flags.writeable
        del out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_larger_than_one_chunk(tmp_path, rng, dtype, suffix):
    # 2-3 MB of data: several reads and several output chunks of 1 MiB.
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        arr = rng.integers(info.min, info.max, size=(301, 7, 499), endpoint=True, dtype=dtype)
    else:
        arr = rng.standard_normal((301, 7, 499)).astype(dtype)
    path = tmp_path / f"big{suffix}"
    write_idx(path, arr)
    assert same_bits(arr, read_idx(path))


def test_exact_bytes_written(tmp_path):
    write_idx(tmp_path / "u8", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert (tmp_path / "u8").read_bytes() == header(0x08, [2, 3]) + bytes([1, 2, 3, 4, 5, 6])
    write_idx(tmp_path / "i16", np.array([1, -2], dtype=np.int16))
    assert (tmp_path / "i16").read_bytes() == header(0x0B, [2]) + b"\x00\x01\xff\xfe"
    write_idx(tmp_path / "f64", np.array([1.0], dtype="<f8"))
    assert (tmp_path / "f64").read_bytes() == header(0x0E, [1]) + b"\x3f\xf0" + bytes(6)


def test_write_accepts_any_layout_and_byte_order(tmp_path, rng):
    base = rng.integers(-1000, 1000, size=(5, 6, 7), dtype=np.int32)
    for i, arr in enumerate(
        [base.T, base[:, ::2, 1:], np.asfortranarray(base), base.astype(">i4")]
    ):
        write_idx(tmp_path / f"a{i}", arr)
        out = read_idx(tmp_path / f"a{i}")
        assert out.shape == arr.shape and np.array_equal(out, arr)


def test_raw_uint8_is_a_read_only_memory_map(tmp_path, rng):
    arr = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, arr)
    out = read_idx(path)
    assert isinstance(out, np.memmap)
    assert out.dtype == np.uint8 and not out.flags.writeable and not out.flags.owndata
    assert isinstance(out.base, mmap.mmap)
    assert out.offset == 16 and np.array_equal(out, arr)
    with pytest.raises(ValueError, match="read-only"):
        out[0, 0, 0] = 1


def test_raw_multibyte_map_is_big_endian_gzip_is_native(tmp_path, rng):
    arr = rng.standard_normal((4, 3)).astype(np.float32)
    write_idx(tmp_path / "f", arr)
    write_idx(tmp_path / "f.gz", arr)
    mapped, unzipped = read_idx(tmp_path / "f"), read_idx(tmp_path / "f.gz")
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.dtype(">f4")
    assert unzipped.dtype == np.dtype("=f4") and unzipped.dtype.isnative
    assert np.array_equal(mapped, arr) and np.array_equal(unzipped, arr)
    copied = read_idx(tmp_path / "f", mmap=False)
    assert copied.dtype.isnative and copied.flags.writeable and np.array_equal(copied, arr)


def test_compression_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    write_idx(tmp_path / "looks-raw", arr, compress=True)
    write_idx(tmp_path / "looks-compressed.gz", arr, compress=False)
    assert (tmp_path / "looks-raw").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "looks-compressed.gz").read_bytes()[:4] == b"\x00\x00\x0b\x02"
    assert np.array_equal(read_idx(tmp_path / "looks-raw"), arr)
    assert isinstance(read_idx(tmp_path / "looks-compressed.gz"), np.memmap)
    write_idx(str(tmp_path / "by-suffix.gz"), arr)  # str paths too
    assert (tmp_path / "by-suffix.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_concatenated_gzip_members_are_one_stream(tmp_path):
    data = header(0x08, [6]) + bytes(range(6))
    path = put(tmp_path, "multi", gz(data[:7]) + gz(data[7:]))
    assert read_idx(path).tolist() == list(range(6))


@pytest.mark.parametrize("values, dtype", [
    ([[1, 2], [3, 4]], "u1"), ([0, 255], "u1"), ([True, False], "u1"), ([-1, 127], "i1"),
    ([-1, 128], ">i2"), ([300], ">i2"), ([-40000, 1], ">i4"), ([2**31 - 1], ">i4"),
    ([2**31], ">f4"), ([2**40 + 1], ">f8"), ([0.5, -2.0], ">f4"),
    ([1.0, np.nan, np.inf], ">f4"), ([0.1], ">f8"), ([1e300], ">f8"),
])
def test_write_gives_a_list_the_smallest_type_that_holds_it_exactly(tmp_path, values, dtype):
    # NumPy makes int64 or float64 of a list, and IDX has no int64: the docstring's
    # array_like [[1, 2], [3, 4]] was refused with "dtype int64 has no IDX element type".
    write_idx(tmp_path / "x", values)
    back = read_idx(tmp_path / "x")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, np.asarray(values))


def test_write_refuses_a_list_no_idx_type_holds_exactly(tmp_path):
    with pytest.raises(TypeError, match="no IDX element type holds these values exactly"):
        write_idx(tmp_path / "x", [1, 2**62 + 1])
    # An array's dtype is the caller's: an int64 one is refused, whatever its values.
    with pytest.raises(TypeError, match="dtype int64 has no IDX element type"):
        write_idx(tmp_path / "x", np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.zeros(3, dtype=bool), TypeError, "dtype bool has no IDX element type"),
        (np.zeros(3, dtype=np.uint16), TypeError, "uint16"),
        (np.zeros(3, dtype=complex), TypeError, "complex128"),
        (np.array(["a"]), TypeError, "<U1"),
        (np.uint8(3), ValueError, "got a 0-d array"),
        (np.zeros((2, 0), dtype=np.uint8), ValueError, "dimension 1 has size 0"),
        (np.zeros((1,) * 33, dtype=np.uint8), ValueError, "1 to 32 dimensions"),
        # NumPy's "setting an array element with a sequence ... inhomogeneous shape".
        ([[1, 2], [3]], ValueError, r"^write_idx: the array is ragged .* same length$"),
        ([[[1], [2]], [[3]]], ValueError, "write_idx: the array is ragged"),
    ],
)
def test_write_refuses_what_idx_cannot_hold(tmp_path, array, error, message):
    with pytest.raises(error, match=message):
        write_idx(tmp_path / "x.gz", array)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_write_is_atomic(tmp_path, monkeypatch, failure):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def fail(*args):
        raise failure

    monkeypatch.setattr(datasets.os, "fsync", fail)
    with pytest.raises(type(failure)):
        write_idx(path, np.arange(50, dtype=np.uint8))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.gz"]


# What write_idx must not write, or not write over: refused before any byte is written.


@pytest.mark.parametrize(
    "masked",
    [
        np.ma.array([1, 2, 3], mask=[False, True, False], dtype=np.uint8),
        np.ma.array(np.zeros((2, 2), dtype=np.float32)),  # no value masked: still refused
    ],
)
def test_write_refuses_masked_arrays(tmp_path, masked):
    with pytest.raises(TypeError, match=r"masked array.*filled\(value\)"):
        write_idx(tmp_path / "m.gz", masked)
    assert list(tmp_path.iterdir()) == []


def _make_target(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        os.mkfifo(target)
    elif kind == "link to the null device":
        target.symlink_to(os.devnull)  # the real device is only looked at, never opened
    else:
        target.mkdir()
    return target


@pytest.mark.parametrize("kind, what", [("fifo", "a FIFO"),
                                        ("link to the null device", "a character device"),
                                        ("directory", "a directory")])
def test_write_refuses_targets_that_are_not_regular_files(tmp_path, kind, what):
    target = _make_target(tmp_path, kind)
    before = os.lstat(target)
    with pytest.raises(OSError, match="not a regular file") as info:
        write_idx(target, np.arange(3, dtype=np.uint8))
    assert str(target) in str(info.value) and what in str(info.value)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert [p.name for p in tmp_path.iterdir()] == ["target"]  # no temporary file left


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path, mode):
    path = tmp_path / "private.gz"
    write_idx(path, np.arange(3, dtype=np.uint8))
    os.chmod(path, mode)
    write_idx(path, np.arange(7, dtype=np.uint8))
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert read_idx(path).tolist() == list(range(7))


def test_new_files_get_the_mode_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        write_idx(tmp_path / "new", np.arange(3, dtype=np.uint8))
        (tmp_path / "by-open").write_bytes(b"")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "new").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "by-open").st_mode) == 0o640


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "view",
    [
        np.broadcast_to(np.zeros(1, np.uint8), (2**31, 2**31)),  # 2**62 bytes in 1 byte
        np.broadcast_to(np.zeros((1, 1, 1), np.float64), (2**20, 2**20, 2**19)),
    ],
    ids=["uint8", "float64"],
)
def test_write_refuses_arrays_larger_than_the_disk_up_front(tmp_path, compress, view):
    nbytes = 4 + 4 * view.ndim + int(np.prod(view.shape, dtype=object)) * view.itemsize
    with pytest.raises(ValueError, match=f"would hold {nbytes} bytes.*free on the file system"):
        write_idx(tmp_path / "huge", view, compress=compress)
    assert list(tmp_path.iterdir()) == []


def test_write_compares_with_the_free_space_of_the_target(tmp_path, monkeypatch):
    def statvfs(path):  # a file system with 1000 bytes free
        return types.SimpleNamespace(f_blocks=100, f_bavail=1, f_frsize=1000)

    monkeypatch.setattr(_idx.os, "statvfs", statvfs)
    zeros = np.zeros(2000, dtype=np.uint8)
    with pytest.raises(ValueError, match="2008 bytes.*the 1000 bytes free"):
        write_idx(tmp_path / "raw", zeros)
    write_idx(tmp_path / "small", zeros[:900])
    write_idx(tmp_path / "zeros.gz", zeros)  # compressed, it may fit: it is tried
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small", "zeros.gz"]
    assert np.array_equal(read_idx(tmp_path / "zeros.gz"), zeros)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_streams_views_without_copying_them(tmp_path, suffix):
    rows = np.arange(256, dtype=np.int16)
    views = [np.broadcast_to(rows, (32, 1024, 256)),  # 16 MiB described by 512 bytes
             np.broadcast_to(rows[:, None], (256, 4096)).T[::2]]  # strided and transposed
    for i, view in enumerate(views):
        path = tmp_path / f"view{i}{suffix}"
        tracemalloc.start()
        try:
            write_idx(path, view)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * 2**20, f"write_idx held {peak} bytes for a {view.nbytes}-byte view"
        assert np.array_equal(read_idx(path), view)


# ---------------------------------------------------------------------------------------
# Malformed files

GOOD = header(0x08, [2, 3]) + bytes(6)

# (content, patterns in the message) for files that are bad in the same way compressed or
# not; each is also tried gzip-compressed.
MALFORMED = {
    "empty": (b"", ["too short to be an IDX file", "magic number is truncated"]),
    "short magic": (b"\x00\x00\x08", ["too short", "magic"]),
    "bad magic": (b"\x01\x02" + GOOD[2:], ["bad magic number", "bytes 0-1", "0x01 0x02"]),
    "text file": (b"hello world\n", ["bad magic number", "0x68 0x65"]),
    "unknown type": (
        b"\x00\x00\x0a\x02" + GOOD[4:],
        ["unknown IDX element type code 0x0A", "byte offset 2", r"0x0D \(float32\)"],
    ),
    "zero dimensions": (b"\x00\x00\x08\x00" + bytes(6), ["number of dimensions 0", "offset 3"]),
    "too many dimensions": (b"\x00\x00\x08\xc8" + bytes(64), ["dimensions 200", "offset 3"]),
    "size 0": (header(0x08, [2, 0, 3]), ["dimension 1 at byte offset 8", "is 0"]),
    "truncated header": (
        b"\x00\x00\x08\x03" + bytes([0, 0, 0, 2]) + bytes([0, 0]),
        ["truncated in its header", "bytes 4 to 15", "ends at byte offset 10"],
    ),
    "truncated data": (
        header(0x0B, [2, 2]) + bytes(5),
        ["truncated data", r"shape \(2, 2\) of int16 \(8 bytes of data\)", "byte offset 12"],
    ),
    "trailing bytes": (
        header(0x0C, [2]) + bytes(11),
        ["trailing bytes", "should end at byte offset 16", "3 (extra|more bytes)"],
    ),
}


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_helpful_value_errors(tmp_path, case, compressed):
    content, patterns = MALFORMED[case]
    path = put(tmp_path, "bad-idx", gz(content) if compressed else content)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    if compressed:
        assert "(decompressed)" in message


def _big_gz(rng):
    # Random bytes do not compress: the data part of the stream is long.
    return gz(header(0x08, [100, 100]) + rng.integers(0, 256, 10000, dtype=np.uint8).tobytes())


@pytest.mark.parametrize(
    "damage, patterns",
    [
        ("crc", ["corrupt gzip", "incorrect data check"]),
        ("length", ["corrupt gzip", "incorrect length check"]),
        ("cut in data", ["corrupt gzip", "compressed stream is truncated", "before the end"]),
        ("cut in trailer", ["corrupt gzip", "truncated"]),
        ("flipped deflate bytes", ["corrupt gzip", "compressed byte offset"]),
        ("bad gzip header", ["corrupt gzip"]),
        ("garbage after stream", ["corrupt gzip", "unexpected bytes after the end", "offset"]),
        ("half a second member", ["corrupt gzip", "truncated"]),
    ],
)
def test_corrupt_gzip_raises_value_error(tmp_path, rng, damage, patterns):
    data = bytearray(_big_gz(rng))
    n = len(data)
    if damage == "crc":
        data[-8] ^= 0xFF
    elif damage == "length":
        data[-1] ^= 0xFF
    elif damage == "cut in data":
        data = data[: n // 2]
    elif damage == "cut in trailer":
        data = data[:-3]
    elif damage == "flipped deflate bytes":
        for i in range(n // 3, n // 3 + 40):
            data[i] ^= 0x5A
    elif damage == "bad gzip header":
        data[2] = 9  # compression method: only 8 (deflate) exists
    elif damage == "garbage after stream":
        data += b"garbage"
        patterns = patterns + [f"offset {n}"]
    elif damage == "half a second member":
        data += gz(b"x" * 100)[:10]
    path = put(tmp_path, "bad.gz", bytes(data))
    with pytest.raises(ValueError) as info:
        read_idx(path)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


def _gzip_member(*parts):
    """One gzip member of the concatenated parts, compressed as they come (never joined)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([*(deflate.compress(p) for p in parts), deflate.flush()])


@pytest.mark.parametrize("where", ["in the same member", "in another member"])
def test_trailing_gzip_data_is_rejected_without_inflating_it(tmp_path, monkeypatch, where):
    data = header(0x08, [100]) + bytes(range(100))
    padding = [bytes(1 << 20)] * 64  # 64 MiB of zeros, about 64 kB compressed
    if where == "in the same member":
        content = _gzip_member(data, *padding)
    else:
        content = _gzip_member(data) + _gzip_member(*padding)
    path = put(tmp_path, "padded.gz", content)
    inflated = []
    read = _idx._GzipSource.read

    def counting_read(self, n):
        out = read(self, n)
        inflated.append(len(out))
        return out

    monkeypatch.setattr(_idx._GzipSource, "read", counting_read)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert "trailing bytes" in message and str(path) in message
    assert "should end at byte offset 108 (decompressed)" in message
    assert f"more than {1 << 20} more bytes follow" in message
    assert sum(inflated) <= len(data) + (1 << 20) + 1, "the trailing data was inflated"


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("code, dims", [(0x08, [2**30, 2**30]), (0x0E, [2**20, 2**20, 2**20])])
def test_absurd_header_raises_before_allocating(tmp_path, code, dims, compressed):
    content = header(code, dims) + bytes(64)
    path = put(tmp_path, "huge", gz(content) if compressed else content)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 2**20, f"read_idx allocated {peak} bytes for an impossible header"
    nbytes = np.prod(dims, dtype=object) * (8 if code == 0x0E else 1)
    assert f"{nbytes} bytes of data" in str(info.value)
    assert ("impossible header" if compressed else "truncated data") in str(info.value)


def test_a_fifo_is_refused_rather_than_waited_on(tmp_path):
    fifo = tmp_path / "images.idx"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="is not a regular file"):
        read_idx(fifo)  # opening it would wait for a writer forever


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------------------------
# Loaders on generated data sets


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An environment with no data anywhere: HOME, the cache and the system dir in tmp."""
    ns = types.SimpleNamespace(
        home=tmp_path / "home",
        cache=tmp_path / "xdg-cache",
        system=tmp_path / "system",
        tmp=tmp_path,
    )
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("HOME", str(ns.home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(ns.cache))
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", (str(ns.system),))
    return ns


def make_dataset(directory, rng, *, n_train=6, n_test=4, compress=True, shape=(28, 28)):
    """Write a small data set of the four original files; returns its arrays by role."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for role, name in FILES.items():
        write_idx(directory / (name if compress else name[:-3]), arrays[role])
    return arrays


def loaded_from(bunch):
    return pathlib.Path(bunch.filenames["train_images"]).parent


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_bunch_contents(env, rng, compress):
    arrays = make_dataset(env.tmp / "d", rng, compress=compress)
    ds = load_fashion_mnist(env.tmp / "d")
    assert set(ds) == {
        "data", "images", "target", "data_test", "images_test", "target_test",
        "target_names", "feature_names", "DESCR", "filenames",
    }  # fmt: skip
    assert ds.data.shape == (6, 784) and ds.data.dtype == np.uint8
    assert ds.images.shape == (6, 28, 28) and ds.images.dtype == np.uint8
    assert ds.data_test.shape == (4, 784) and ds.images_test.shape == (4, 28, 28)
    assert np.shares_memory(ds.data, ds.images) and np.shares_memory(ds.data_test, ds.images_test)
    assert np.array_equal(ds.images, arrays["train_images"])
    assert np.array_equal(ds.data[:, 28:56], arrays["train_images"][:, 1, :])
    assert np.array_equal(ds.images_test, arrays["test_images"])
    assert ds.target.dtype == np.int64 and ds.target_test.dtype == np.int64
    assert np.array_equal(ds.target, arrays["train_labels"])
    assert np.array_equal(ds.target_test, arrays["test_labels"])
    assert list(ds.target_names) == FASHION_NAMES
    assert ds.target_names[ds.target].shape == (6,)
    assert len(ds.feature_names) == 784
    assert (
        ds.feature_names[:2] == ["pixel_0_0", "pixel_0_1"] and ds.feature_names[-1] == "pixel_27_27"
    )
    assert set(ds.filenames) == set(FILES)
    for role, name in FILES.items():
        assert ds.filenames[role] == str(env.tmp / "d" / (name if compress else name[:-3]))
    assert "Fashion-MNIST" in ds.DESCR and "Ankle boot" in ds.DESCR
    assert "6 images" in ds.DESCR and "4 images" in ds.DESCR
    assert str(env.tmp / "d") in ds.DESCR and "(data_home)" in ds.DESCR
    if compress:
        assert not isinstance(ds.images, np.memmap)
    else:
        assert isinstance(ds.images, np.memmap) and not ds.data.flags.writeable


def test_return_X_y(env, rng):
    arrays = make_dataset(env.tmp / "d", rng)
    out = load_fashion_mnist(data_home=str(env.tmp / "d"), return_X_y=True)
    assert isinstance(out, tuple) and len(out) == 4
    X_train, y_train, X_test, y_test = out
    assert X_train.shape == (6, 784) and X_test.shape == (4, 784)
    assert np.array_equal(X_train, arrays["train_images"].reshape(6, -1))
    assert np.array_equal(y_train, arrays["train_labels"]) and y_train.dtype == np.int64
    assert np.array_equal(y_test, arrays["test_labels"])


def test_load_mnist(env, rng):
    make_dataset(env.tmp / "d" / "mnist", rng)
    ds = load_mnist(env.tmp / "d")
    assert list(ds.target_names) == [str(i) for i in range(10)]
    assert ds.DESCR.startswith("MNIST") and "handwritten digits" in ds.DESCR
    assert loaded_from(ds) == env.tmp / "d" / "mnist"


def test_lookup_order(env, rng, monkeypatch):
    make_dataset(env.tmp / "home-arg", rng)  # the files directly in data_home
    make_dataset(env.tmp / "envdir" / "fashion-mnist", rng)  # in $FASTMLP_DATA/<name>
    make_dataset(env.system / "fashion-mnist", rng)
    make_dataset(env.cache / "fastmlp" / "fashion-mnist", rng)
    monkeypatch.setenv("FASTMLP_DATA", str(env.tmp / "envdir"))
    assert loaded_from(load_fashion_mnist(env.tmp / "home-arg")) == env.tmp / "home-arg"
    assert loaded_from(load_fashion_mnist()) == env.tmp / "envdir" / "fashion-mnist"
    monkeypatch.delenv("FASTMLP_DATA")
    assert loaded_from(load_fashion_mnist()) == env.system / "fashion-mnist"
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", ())
    ds = load_fashion_mnist()
    assert loaded_from(ds) == env.cache / "fastmlp" / "fashion-mnist"
    assert "(user cache)" in ds.DESCR
    # Without XDG_CACHE_HOME (or with a relative one, which the specification says to
    # ignore) the cache is ~/.cache.
    make_dataset(env.home / ".cache" / "fastmlp" / "fashion-mnist", rng)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert loaded_from(load_fashion_mnist()) == env.home / ".cache" / "fastmlp" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert loaded_from(load_fashion_mnist()) == env.home / ".cache" / "fastmlp" / "fashion-mnist"


def test_data_home_itself_beats_its_subdirectory(env, rng):
    make_dataset(env.tmp / "d", rng)
    make_dataset(env.tmp / "d" / "fashion-mnist", rng)
    assert loaded_from(load_fashion_mnist(env.tmp / "d")) == env.tmp / "d"


def test_the_registry_the_command_line_asks(env, rng):
    from fastmlp import _idx

    assert datasets.read_idx is _idx.read_idx and datasets.write_idx is _idx.write_idx
    assert datasets._DATASETS["fashion-mnist"].loader is load_fashion_mnist
    assert datasets._DATASETS["mnist"].loader is load_mnist
    assert datasets._DATASETS["fashion-mnist"].title == "Fashion-MNIST"
    assert list(datasets._DATASETS["fashion-mnist"].target_names) == FASHION_NAMES
    assert datasets._FILE_NAMES == tuple(FILES.values())
    # _in_data_home says what the loaders would find in data_home: the four files directly
    # in it or in data_home/<name>, raw or gzipped.
    d = env.tmp / "d"
    assert not datasets._in_data_home("mnist", d)
    make_dataset(d / "mnist", rng, compress=False)
    assert datasets._in_data_home("mnist", d) and datasets._in_data_home("mnist", d / "mnist")
    assert not datasets._in_data_home("fashion-mnist", d)
    assert loaded_from(load_mnist(d)) == d / "mnist"
    (d / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    assert not datasets._in_data_home("mnist", d)


def test_incomplete_directory_is_skipped_and_reported(env, rng, monkeypatch):
    make_dataset(env.tmp / "partial", rng)
    (env.tmp / "partial" / FILES["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError, match="incomplete, missing t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(env.tmp / "partial")
    make_dataset(env.tmp / "envdir", rng)
    monkeypatch.setenv("FASTMLP_DATA", str(env.tmp / "envdir"))
    assert loaded_from(load_fashion_mnist(env.tmp / "partial")) == env.tmp / "envdir"


def test_raw_and_gzip_names_may_be_mixed(env, rng):
    arrays = make_dataset(env.tmp / "d", rng)
    gz_path = env.tmp / "d" / FILES["train_images"]
    gz_path.unlink()
    write_idx(env.tmp / "d" / "train-images-idx3-ubyte", arrays["train_images"])
    ds = load_fashion_mnist(env.tmp / "d")
    assert isinstance(ds.images, np.memmap) and not isinstance(ds.images_test, np.memmap)
    assert np.array_equal(ds.images, arrays["train_images"])


def test_not_found_says_how_to_get_the_data(env):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(env.tmp / "nowhere")
    assert isinstance(info.value, OSError)
    message = str(info.value)
    for text in [
        "Fashion-MNIST was not found",
        "sudo apt-get install dataset-fashion-mnist",
        "download=True",
        "FASTMLP_DATA",
        "data_home=DIR",
        "$FASTMLP_DATA: not set",
        f"{env.tmp / 'nowhere'} (data_home): does not exist",
        f"{env.tmp / 'nowhere' / 'fashion-mnist'} (data_home)",
        f"{env.system / 'fashion-mnist'} (system)",
        f"{env.cache / 'fastmlp' / 'fashion-mnist'} (user cache)",
        f"saves to {env.tmp / 'nowhere' / 'fashion-mnist'}",
    ]:
        assert text in message, (text, message)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    assert "MNIST was not found" in str(info.value) and "apt-get" not in str(info.value)
    assert "data_home: not given" in str(info.value)
    assert f"saves to {env.cache / 'fastmlp' / 'mnist'}" in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ("count", "holds 6 images but .* holds 5 labels"),
        ("shape", "does not hold 28x28 uint8 images"),
        ("dtype", "does not hold 28x28 uint8 images: it holds shape \\(6, 28, 28\\) of int16"),
        ("label", "holds label 10; labels must be 0 to 9"),
        ("labels 2-d", "does not hold a 1-d array of uint8 labels"),
    ],
)
def test_loader_validates_the_files(env, rng, change, message):
    arrays = make_dataset(env.tmp / "d", rng)
    if change == "count":
        write_idx(env.tmp / "d" / FILES["train_labels"], arrays["train_labels"][:5])
    elif change == "shape":
        write_idx(env.tmp / "d" / FILES["train_images"], arrays["train_images"][:, :27])
    elif change == "dtype":
        write_idx(env.tmp / "d" / FILES["train_images"], arrays["train_images"].astype(np.int16))
    elif change == "label":
        write_idx(env.tmp / "d" / FILES["train_labels"], np.full(6, 10, dtype=np.uint8))
    elif change == "labels 2-d":
        write_idx(env.tmp / "d" / FILES["train_labels"], np.zeros((6, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=message):
        load_fashion_mnist(env.tmp / "d")


def test_malformed_data_file_names_it(env, rng):
    make_dataset(env.tmp / "d", rng)
    path = env.tmp / "d" / FILES["test_labels"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(env.tmp / "d")


# ---------------------------------------------------------------------------------------
# Downloads against a local HTTP server


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 serving ``state.files`` ({path: bytes});
    paths in ``state.truncate`` announce their full length but send only half."""
    state = types.SimpleNamespace(files={}, truncate=set(), requests=[], behaviours={},
                                  stop=threading.Event())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            behaviour = state.behaviours.get(self.path)
            if behaviour is not None:
                with contextlib.suppress(OSError):  # the client hung up: done
                    behaviour(self, state.stop)
                return
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if self.path in state.truncate else data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/mirror/"
    try:
        yield state
    finally:
        state.stop.set()  # ends the hostile behaviours still running
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def served(env, rng, server, monkeypatch):
    """A generated data set on the server, with CHECKSUMS replaced by its MD5 sums."""
    arrays = make_dataset(env.tmp / "source", rng)
    sums = {}
    for name in FILES.values():
        content = (env.tmp / "source" / name).read_bytes()
        server.files[f"/mirror/{name}"] = content
        sums[name] = hashlib.md5(content).hexdigest()
    monkeypatch.setitem(datasets.CHECKSUMS, "fashion-mnist", sums)
    server.arrays = arrays
    return server


def files_under(directory):
    return sorted(
        str(pathlib.Path(root, f).relative_to(directory))
        for root, _, names in os.walk(directory)
        for f in names
    )


def test_download_into_the_cache(env, served, capsys):
    ds = load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    target = env.cache / "fastmlp" / "fashion-mnist"
    assert loaded_from(ds) == target
    assert files_under(env.cache) == sorted(f"fastmlp/fashion-mnist/{n}" for n in FILES.values())
    assert np.array_equal(ds.images, served.arrays["train_images"])
    assert np.array_equal(ds.target_test, served.arrays["test_labels"])
    assert sorted(served.requests) == sorted(f"/mirror/{n}" for n in FILES.values())
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no progress bar
    # Found now: no second download.
    load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert len(served.requests) == 4


def test_download_into_data_home_with_progress(env, served, capsys):
    ds = load_fashion_mnist(
        env.tmp / "dh", download=True, base_url=served.url.rstrip("/"), timeout=5, verbose=True
    )
    assert loaded_from(ds) == env.tmp / "dh" / "fashion-mnist"
    assert "downloaded" in ds.DESCR
    err = capsys.readouterr().err
    for name in FILES.values():
        assert name in err
    assert "MB" in err and "#" in err
    assert not env.cache.exists()


def test_download_fetches_only_missing_files(env, served):
    target = env.cache / "fastmlp" / "fashion-mnist"
    target.mkdir(parents=True)
    name = FILES["train_images"]
    (target / name).write_bytes(served.files[f"/mirror/{name}"])
    load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert len(served.requests) == 3 and f"/mirror/{name}" not in served.requests


def assert_nothing_left(env):
    assert not env.cache.exists() or files_under(env.cache) == []
    assert not (env.cache / "fastmlp").exists()  # directories the download created are gone


def test_download_checksum_mismatch_leaves_nothing(env, served):
    path = f"/mirror/{FILES['test_labels']}"
    damaged = bytearray(served.files[path])
    damaged[20] ^= 0xFF
    served.files[path] = bytes(damaged)
    with pytest.raises(OSError, match="checksum mismatch") as info:
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    expected = datasets.CHECKSUMS["fashion-mnist"][FILES["test_labels"]]
    assert f"expected {expected}" in str(info.value) and hashlib.md5(damaged).hexdigest() in str(
        info.value
    )
    assert_nothing_left(env)


def test_download_with_the_published_checksums_rejects_other_files(env, served, monkeypatch):
    monkeypatch.setitem(datasets.CHECKSUMS, "fashion-mnist", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    })  # fmt: skip
    with pytest.raises(OSError, match="checksum mismatch"):
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert_nothing_left(env)


def test_download_truncated_response_leaves_nothing(env, served):
    served.truncate.add(f"/mirror/{FILES['train_images']}")
    size = len(served.files[f"/mirror/{FILES['train_images']}"])
    with pytest.raises(OSError, match=f"cut short: received {size // 2} of {size} bytes"):
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert_nothing_left(env)


def test_download_http_error(env, served):
    del served.files[f"/mirror/{FILES['train_labels']}"]
    with pytest.raises(OSError, match="HTTP 404"):
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert_nothing_left(env)


def test_download_server_down_leaves_nothing(env):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(OSError, match=f"could not download http://127.0.0.1:{port}/") as info:
        load_fashion_mnist(download=True, base_url=f"http://127.0.0.1:{port}", timeout=5)
    assert time.perf_counter() - start < 5
    assert "refused" in str(info.value).lower()
    assert ("Check the network connection and base_url, or get the files another way (see "
            "the message of load_fashion_mnist() without download=True)") in str(info.value)
    assert_nothing_left(env)


def test_download_keeps_existing_directories(env, served):
    (env.tmp / "dh").mkdir()
    served.files.clear()
    with pytest.raises(OSError):
        load_fashion_mnist(env.tmp / "dh", download=True, base_url=served.url, timeout=5)
    assert (env.tmp / "dh").is_dir() and files_under(env.tmp / "dh") == []
    assert not (env.tmp / "dh" / "fashion-mnist").exists()


@pytest.fixture
def mirror(env, server, rng, monkeypatch):
    """On the server, as Fashion-MNIST's default mirror (the command line takes no
    base_url), a data set the command line can train on and evaluate: every class in both
    splits. The system directory holds a copy of it."""
    arrays = {"train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "train_labels": np.arange(20, dtype=np.uint8) % 10,
              "test_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "test_labels": np.arange(10, dtype=np.uint8)}
    source = env.system / "fashion-mnist"
    source.mkdir(parents=True)
    sums = {}
    for role, name in FILES.items():
        write_idx(source / name, arrays[role])
        server.files[f"/mirror/{name}"] = (source / name).read_bytes()
        sums[name] = hashlib.md5(server.files[f"/mirror/{name}"]).hexdigest()
    monkeypatch.setitem(datasets.CHECKSUMS, "fashion-mnist", sums)
    spec = dataclasses.replace(datasets._DATASETS["fashion-mnist"], url=server.url)
    monkeypatch.setitem(datasets._DATASETS, "fashion-mnist", spec)
    return server


def test_the_command_line_downloads_into_its_data_dir(env, mirror, capsys):
    # --data-dir DIR --download downloaded nothing and used the system directory's copy.
    here, model = env.tmp / "mine", env.tmp / "m.fastmlp"
    status, out, err = run(capsys, "train", "--data-dir", here, "--download",
                               "--epochs", "1", "--hidden", "4", "--save", model)
    assert status == 0, err
    assert f"20 training and 10 test images from {here / 'fashion-mnist'}\n" in out
    assert files_under(here) == sorted(f"fashion-mnist/{n}" for n in FILES.values())
    assert sorted(mirror.requests) == sorted(f"/mirror/{n}" for n in FILES.values())
    status, out, err = run(capsys, "evaluate", model, "--data-dir", env.tmp / "other",
                               "--download")
    assert status == 0, err
    # evaluate fetches only the two test files it reads (it fetched all four).
    assert files_under(env.tmp / "other") == sorted(
        f"fashion-mnist/{n}" for n in (FILES["test_images"], FILES["test_labels"]))
    assert len(mirror.requests) == 6
    assert f"test set: 10 images from {env.tmp / 'other' / 'fashion-mnist'}\n" in out
    # Found there now: nothing is downloaded again.
    status, out, err = run(capsys, "train", "--data-dir", here, "--download", "-q",
                               "--epochs", "1", "--hidden", "4")
    assert status == 0 and len(mirror.requests) == 6, err
    status, out, err = run(capsys, "evaluate", model, "--data-dir", env.tmp / "other",
                           "--download")
    assert status == 0 and len(mirror.requests) == 6, err


def test_evaluate_reads_test_files_alone_from_the_lookup(env, mirror, capsys, monkeypatch):
    # With $FASTMLP_DATA holding only the two test files, evaluate read the system
    # directory's full data set instead, without saying which it read.
    model = env.tmp / "m.fastmlp"
    assert run(capsys, "train", "--epochs", "1", "--hidden", "4", "-q", "--save",
               model)[0] == 0
    mine = env.tmp / "mine"
    mine.mkdir()
    for role in ("test_images", "test_labels"):
        write_idx(mine / FILES[role], read_idx(env.system / "fashion-mnist" / FILES[role])[:4])
    monkeypatch.setenv("FASTMLP_DATA", str(mine))
    status, out, err = run(capsys, "evaluate", model)
    assert status == 0, err
    assert f"Fashion-MNIST test set: 4 images from {mine}\n" in out
    # Found nowhere: the message names the two test files, and where it looked.
    shutil.rmtree(env.system)
    for f in mine.iterdir():
        f.unlink()
    (env.tmp / "a-file").write_text("")
    monkeypatch.setenv("FASTMLP_DATA", str(env.tmp / "a-file"))
    status, out, err = run(capsys, "evaluate", model)
    assert status == 1 and out == "", err
    assert "fastmlp looks for the two test files t10k-images-idx3-ubyte.gz and " in err
    assert f"{env.tmp / 'a-file'} ($FASTMLP_DATA): not a directory" in err
    status, _, err = run(capsys, "evaluate", model, "--data-dir", env.tmp / "a-file")
    assert status == 1 and err == f"fastmlp: error: --data-dir {env.tmp / 'a-file'} is not " \
                                  f"a directory\n"


def assert_command_line_advice(err):
    """A failed download's message gives the command's ways, not a loader's parameters."""
    assert "Traceback" not in err and "base_url" not in err and "download=True)" not in err
    assert "run the command without --download for the directories fastmlp searches" in err


@pytest.mark.parametrize("where", ["--data-dir", "the lookup"])
def test_the_command_line_says_when_a_download_fails(env, mirror, capsys, where):
    del mirror.files[f"/mirror/{FILES['train_labels']}"]
    options = ["--data-dir", env.tmp / "mine"] if where == "--data-dir" else []
    if where == "the lookup":  # found nowhere: downloaded into the user cache
        shutil.rmtree(env.system)
    status, out, err = run(capsys, "train", *options, "--download")
    assert status == 1 and out == "" and "HTTP 404" in err, err
    assert_command_line_advice(err)
    assert not (env.tmp / "mine").exists()  # nothing is left behind
    assert_nothing_left(env)


def test_the_command_line_says_when_a_download_is_too_slow(env, mirror, capsys, monkeypatch):
    mirror.behaviours[f"/mirror/{FILES['train_images']}"] = _stall
    monkeypatch.setitem(datasets.load_fashion_mnist.__kwdefaults__, "timeout", 1)
    status, out, err = run(capsys, "train", "--data-dir", env.tmp / "mine", "--download")
    assert status == 1 and "did not arrive within timeout=1 s" in err, err
    assert "download in Python with fastmlp.datasets.load_fashion_mnist(download=True, " \
           "timeout=SECONDS)" in err
    assert_command_line_advice(err)
    assert not (env.tmp / "mine").exists()


# Hostile servers: each behaviour writes at most for _BOUND seconds, and stops when the
# client hangs up or the test ends.
_BOUND = 15


def _drip(handler, stop, data):
    """data, one byte every 0.2 s."""
    deadline = time.monotonic() + _BOUND
    for i in range(len(data)):
        if stop.wait(0.2) or time.monotonic() > deadline:
            return
        handler.wfile.write(data[i : i + 1])
        handler.wfile.flush()


def _slow_headers(handler, stop):
    _drip(handler, stop, b"HTTP/1.0 200 OK\r\n" + b"X-Padding: slow\r\n" * 100)


def _slow_body(handler, stop):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    _drip(handler, stop, bytes(1000))


def _stall(handler, stop):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(bytes(10))
    handler.wfile.flush()
    stop.wait(_BOUND)


def _endless_body(handler, stop):
    handler.send_response(200)  # no Content-Length: the body runs until the connection ends
    handler.end_headers()
    deadline = time.monotonic() + _BOUND
    while not stop.is_set() and time.monotonic() < deadline:
        handler.wfile.write(bytes(1 << 16))


def _announces_a_gigabyte(handler, stop):
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**9))
    handler.end_headers()
    stop.wait(_BOUND)


@pytest.mark.parametrize("behaviour", [_slow_headers, _slow_body, _stall],
                         ids=["slow headers", "slow body", "stall"])
def test_download_has_a_deadline_for_the_whole_file(env, served, behaviour):
    served.behaviours[f"/mirror/{FILES['train_images']}"] = behaviour
    start = time.monotonic()
    with pytest.raises(OSError, match="did not arrive within timeout=1 s") as info:
        load_fashion_mnist(download=True, base_url=served.url, timeout=1)
    assert time.monotonic() - start < 1 + 2, "the deadline did not end the download"
    assert "larger timeout" in str(info.value)
    assert_nothing_left(env)


def test_download_stops_one_byte_past_the_known_size(env, served):
    name = FILES["test_labels"]  # the published registry: 5148 bytes
    served.behaviours[f"/mirror/{name}"] = _endless_body
    with pytest.raises(OSError, match="the server sent more than 5148 bytes") as info:
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert f"{name} has 5148" in str(info.value)
    assert_nothing_left(env)


def test_download_refuses_an_announced_size_beyond_the_known_one(env, served, monkeypatch):
    monkeypatch.setitem(datasets.SIZES["fashion-mnist"], FILES["train_images"], 1000)
    served.behaviours[f"/mirror/{FILES['train_images']}"] = _announces_a_gigabyte
    start = time.monotonic()
    with pytest.raises(OSError, match=f"announces {10**9} bytes, but .* has 1000"):
        load_fashion_mnist(download=True, base_url=served.url, timeout=5)
    assert time.monotonic() - start < 5, "the body was waited for"
    assert_nothing_left(env)


def test_sizes_are_known_for_every_checksummed_file():
    assert datasets.SIZES.keys() == datasets.CHECKSUMS.keys()
    for key, sums in datasets.CHECKSUMS.items():
        assert datasets.SIZES[key].keys() == sums.keys()
        assert all(isinstance(n, int) and n > 0 for n in datasets.SIZES[key].values())
    assert all(spec.url.startswith("https://") for spec in datasets._DATASETS.values())


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True, 1e10,
                                     10**20])
def test_download_timeout_must_be_a_positive_number(env, timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        load_fashion_mnist(download=True, base_url="http://127.0.0.1:9/", timeout=timeout)
    assert_nothing_left(env)


def test_download_base_url_must_be_a_string(env):
    with pytest.raises(TypeError, match="base_url must be a str or None, got int"):
        load_fashion_mnist(download=True, base_url=5, timeout=5)
    assert_nothing_left(env)


def test_write_to_a_path_ending_in_a_slash_or_a_missing_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="ends in a slash"):
        write_idx(f"{tmp_path / 'new'}/", np.zeros(3, np.uint8))
    target = tmp_path / "missing" / "a.idx"
    with pytest.raises(FileNotFoundError, match="its directory does not exist") as info:
        write_idx(target, np.zeros(3, np.uint8))
    assert info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compress", ["no", 1, 0.0])
def test_write_compress_must_be_a_bool_or_none(tmp_path, compress):
    target = tmp_path / "a.idx"
    with pytest.raises(TypeError, match="compress must be True, False or None"):
        write_idx(target, np.zeros(3, np.uint8), compress=compress)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# The real Fashion-MNIST


@pytest.mark.data
def test_real_fashion_mnist():
    ds = fashion_mnist_or_skip()
    assert ds.data.shape == (60000, 784) and ds.data.dtype == np.uint8
    assert ds.images.shape == (60000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.data_test.shape == (10000, 784) and ds.images_test.shape == (10000, 28, 28)
    assert ds.target.shape == (60000,) and ds.target_test.shape == (10000,)
    assert np.array_equal(np.bincount(ds.target, minlength=10), np.full(10, 6000))
    assert np.array_equal(np.bincount(ds.target_test, minlength=10), np.full(10, 1000))
    assert ds.target[0] == 9 and ds.target_names[ds.target[0]] == "Ankle boot"
    assert ds.data.min() == 0 and ds.data.max() == 255
