"""CIFAR-10 loader: both distributions, folders and archives, written by the tests; the
pickled batches are read without unpickling."""

import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from fastmlp.datasets import load_cifar10

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]
N = 4  # images per batch: the files' layout, not their size, is under test


def _batches(rng):
    """{batch name: (images uint8 (N, 3, 32, 32), labels (N,))}."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (rng.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8),
                rng.integers(0, 10, N)) for n in names}


def _binary(images, labels):
    return b"".join(bytes([int(lab)]) + img.tobytes() for img, lab in zip(images, labels))


def _py2_pickle(images, labels):
    """A batch pickled as Python 2's cPickle wrote CIFAR-10: str as BINSTRING, protocol 2."""
    def s(text):  # SHORT_BINSTRING
        b = text.encode("latin1") if isinstance(text, str) else text
        return b"U" + bytes([len(b)]) + b

    raw = images.reshape(len(images), -1).tobytes()
    out = b"\x80\x02}(" + s("data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s("b")
    out += b"\x87R(K\x01M" + struct.pack("<H", len(images)) + b"M\x00\x0c\x86"
    out += b"cnumpy\ndtype\n" + s("u1") + b"K\x00K\x01\x87R(K\x03" + s("|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<I", len(raw))
    out += raw + b"tb" + s("labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels)
    out += b"e" + s("batch_label") + s("training batch 1 of 5") + b"u."
    return out


def _files(batches, pickled, py2=True):
    out = {}
    for name, (images, labels) in batches.items():
        if not pickled:
            out[name + ".bin"] = _binary(images, labels)
        elif py2:
            out[name] = _py2_pickle(images, labels)
        else:
            out[name] = pickle.dumps({b"data": images.reshape(N, -1), b"labels": list(
                map(int, labels))}, protocol=2)
    if pickled:
        out["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in NAMES]}, 2)
    else:
        out["batches.meta.txt"] = ("\n".join(NAMES) + "\n\n").encode()
    return out


def _write(tmp_path, files, folder, archive=None):
    if archive is None:
        (tmp_path / folder).mkdir()
        for name, data in files.items():
            (tmp_path / folder / name).write_bytes(data)
        return
    with tarfile.open(tmp_path / archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


LAYOUTS = [
    ("cifar-10-batches-bin", None, False, True),
    ("cifar-10-batches-py", None, True, True),
    ("cifar-10-batches-py", None, True, False),
    ("cifar-10-batches-bin", "cifar-10-binary.tar.gz", False, True),
    ("cifar-10-batches-py", "cifar-10-python.tar.gz", True, True),
]


@pytest.mark.parametrize("folder, archive, pickled, py2", LAYOUTS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_every_layout_loads_the_images_it_holds(rng, tmp_path, folder, archive, pickled, py2,
                                                channels_last):
    batches = _batches(rng)
    _write(tmp_path, _files(batches, pickled, py2), folder, archive)
    ds = load_cifar10(tmp_path, channels_last=channels_last)
    want = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    if channels_last:
        want = want.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ds.images, want)
    assert ds.data.shape == (5 * N, 3072) and np.shares_memory(ds.data, ds.images)
    np.testing.assert_array_equal(ds.target, np.concatenate(
        [batches[f"data_batch_{i}"][1] for i in range(1, 6)]))
    np.testing.assert_array_equal(ds.target_test, batches["test_batch"][1])
    assert ds.images_test.shape == ((N, 32, 32, 3) if channels_last else (N, 3, 32, 32))
    assert list(ds.target_names) == NAMES
    X, y, X_test, y_test = load_cifar10(tmp_path, return_X_y=True)
    assert X.dtype == np.uint8 and X.shape == (5 * N, 3072) and y_test.shape == (N,)


def test_a_pickle_that_would_run_code_is_refused_unrun(rng, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    files = _files(_batches(rng), pickled=True)
    files["data_batch_3"] = pickle.dumps({b"data": Payload(), b"labels": [1]}, protocol=2)
    _write(tmp_path, files, "cifar-10-batches-py")
    with pytest.raises(ValueError, match="refusing to read the object"):
        load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-5], "whole number"),
    (lambda b: bytes([11]) + b[1:], "labels must be 0 to 9"),
])
def test_malformed_binary_batches_raise(rng, tmp_path, damage, match):
    files = _files(_batches(rng), pickled=False)
    files["test_batch.bin"] = damage(files["test_batch.bin"])
    _write(tmp_path, files, "cifar-10-batches-bin")
    with pytest.raises(ValueError, match=match):
        load_cifar10(tmp_path)


def test_malformed_pickles_and_archives_raise(rng, tmp_path):
    files = _files(_batches(rng), pickled=True)
    files["data_batch_1"] = files["data_batch_1"][:200]  # cut inside the array's bytes
    _write(tmp_path, files, "cifar-10-batches-py")
    with pytest.raises(ValueError, match="data_batch_1"):
        load_cifar10(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    files = _files(_batches(rng), pickled=False)
    del files["test_batch.bin"]
    _write(other, files, "cifar-10-batches-bin", "cifar-10-binary.tar.gz")
    with pytest.raises(ValueError, match="lacks cifar-10-batches-bin/test_batch.bin"):
        load_cifar10(other)


def test_missing_data_names_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-binary.tar.gz") as info:
        load_cifar10(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
