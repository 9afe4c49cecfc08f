"""The Fashion-MNIST and MNIST data sets: where they are, how to get them, how to load them.

:func:`load_fashion_mnist` and :func:`load_mnist` find the four files of a data set on
this machine (or download them when asked), check them, and return a scikit-learn
:class:`~sklearn.utils.Bunch` with the training and test splits. The files are in the IDX
format, which :func:`read_idx` and :func:`write_idx` read and write (they live in
``fastmlp._idx`` and are importable from here).

Where the loaders look, in order (the first directory holding all four files wins):

1. ``data_home``, the argument: the files directly in it, or in ``data_home/<name>``;
2. the directory named by the environment variable ``FASTMLP_DATA`` (same rule);
3. ``/usr/share/datasets/<name>``, where Debian's and Ubuntu's ``dataset-fashion-mnist``
   package installs Fashion-MNIST;
4. the user cache, ``$XDG_CACHE_HOME/fastmlp/<name>`` (``~/.cache/fastmlp/<name>`` when
   ``XDG_CACHE_HOME`` is unset),

where ``<name>`` is ``fashion-mnist`` or ``mnist``. Downloads (only with ``download=True``)
go to ``data_home/<name>``, or to the user cache when ``data_home`` is not given; each file
is checked against the MD5 sums in :data:`CHECKSUMS` before it is moved into place. Each
file's download has a deadline (``timeout``) and a size cap (:data:`SIZES`), so that no
server can hold it for ever or fill the disk.

The command line asks this module, never a copy of it, what the data sets are called and
which files they need: :data:`_DATASETS` (one :class:`_DataSet` per name), :data:`_FILE_NAMES`,
:func:`_in_data_home`, :func:`_download_to_data_home` and :func:`_command_line_not_found`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

from . import _cifar, _net, _progress
from ._atomic import StagedFile
from ._idx import _describe, read_idx, write_idx

if TYPE_CHECKING:  # for annotations only: scikit-learn is imported when data are loaded
    from sklearn.utils import Bunch

__all__ = [
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "load_mnist",
    "load_cifar10",
    "CHECKSUMS",
    "SIZES",
    "SYSTEM_DATA_DIRS",
]


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

#: Sizes in bytes of the downloadable files, by data set and file name, as published
#: beside the checksums. A download stops, and fails, at the first byte beyond them.
SIZES = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": 26421880,
        "train-labels-idx1-ubyte.gz": 29515,
        "t10k-images-idx3-ubyte.gz": 4422102,
        "t10k-labels-idx1-ubyte.gz": 5148,
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": 9912422,
        "train-labels-idx1-ubyte.gz": 28881,
        "t10k-images-idx3-ubyte.gz": 1648877,
        "t10k-labels-idx1-ubyte.gz": 4542,
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
#: The four original file names, in the order of ``_FILES``.
_FILE_NAMES = tuple(_FILES.values())


@dataclass(frozen=True)
class _DataSet:
    """What fastmlp knows about one data set: its names, where to get it, its classes."""

    key: str  # the name in directories and on the command line
    title: str  # the name in messages
    function: str  # the name of its loader in this module
    url: str  # the default download mirror
    apt: str | None  # the Debian/Ubuntu package that installs it, if any
    target_names: tuple[str, ...]
    what: str  # one paragraph for DESCR

    @property
    def loader(self):
        """The public loader, e.g. :func:`load_fashion_mnist`."""
        return globals()[self.function]


_DATASETS = {
    spec.key: spec
    for spec in (
        _DataSet(
            key="fashion-mnist",
            title="Fashion-MNIST",
            function="load_fashion_mnist",
            # Zalando's repository, over https (its S3 site serves plain http only).
            url=(
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                "data/fashion/"
            ),
            apt="dataset-fashion-mnist",
            target_names=(
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
            what=(
                "Grayscale images of clothing articles (tops, trousers, shoes, bags, ...), "
                "one article per image, centred, 28x28 pixels, pixel values 0 (background) "
                "to 255, in ten classes of equal size. A drop-in replacement for MNIST that "
                "is harder to classify."
            ),
        ),
        _DataSet(
            key="mnist",
            title="MNIST",
            function="load_mnist",
            url="https://ossci-datasets.s3.amazonaws.com/mnist/",
            apt=None,
            target_names=tuple(str(d) for d in range(10)),
            what=(
                "Grayscale images of handwritten digits 0-9, size-normalised and centred, "
                "28x28 pixels, pixel values 0 (background) to 255."
            ),
        ),
    )
}


def _candidates(name):
    """The file names accepted for one original file: raw first (it is memory-mapped)."""
    return (name[: -len(".gz")], name)


def _cache_home():
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG specification says relative paths are to be ignored.
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastmlp")


def _data_home_dirs(key, data_home):
    """The directories a data_home (or $FASTMLP_DATA) stands for: itself, then <it>/<key>."""
    home = os.path.expanduser(os.fspath(data_home))
    return [home, os.path.join(home, key)]


def _search_dirs(key, data_home):
    """[(directory, origin)] in lookup order."""
    dirs = []
    if data_home is not None:
        dirs += [(d, "data_home") for d in _data_home_dirs(key, data_home)]
    env = os.environ.get("FASTMLP_DATA", "")
    if env:
        dirs += [(d, "$FASTMLP_DATA") for d in _data_home_dirs(key, env)]
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


def _in_data_home(key, data_home):
    """Whether data set ``key`` is where the loaders would find it: in data_home, directly
    or in ``data_home/<key>``; with data_home None, anywhere in their lookup."""
    if data_home is None:
        return any(not _files_in(d)[1] for d, _ in _search_dirs(key, None))
    return any(not _files_in(d)[1] for d in _data_home_dirs(key, data_home))


def _download_to_data_home(key, data_home, names=None):
    """The command line's ``--download``: fetch the files of data set ``key`` that
    ``data_home`` lacks into ``data_home/<key>`` (None: the user cache), with the loaders'
    defaults, whether or not another directory of the lookup holds them (with
    ``--data-dir DIR`` only DIR counts); ``names``: only those of the files (evaluate's
    two test files). Failures advise the command's own options."""
    defaults = _DATASETS[key].loader.__kwdefaults__
    _download(key, _download_dir(key, data_home), defaults["base_url"], defaults["timeout"],
              defaults["verbose"], advice=_advice(key, command_line=True), names=names)


@dataclass(frozen=True)
class _Advice:
    """What a failed download's message tells its reader to do, in the words of the
    interface they called: a loader's parameters, or the command's options."""

    network: str  # after a failed connection or transfer
    slow: str  # after the deadline ended the transfer
    elsewhere: str  # where to read about getting the files another way


def _advice(key, command_line=False):
    fn = _DATASETS[key].function
    if command_line:
        return _Advice(
            network="Check the network connection",
            slow=f"on a slow connection download in Python with "
                 f"fastmlp.datasets.{fn}(download=True, timeout=SECONDS)",
            elsewhere="run the command without --download for the directories fastmlp "
                      "searches and the other ways to get them")
    return _Advice(network="Check the network connection and base_url",
                   slow="on a slow connection pass a larger timeout",
                   elsewhere=f"see the message of {fn}() without download=True")


def _command_line_not_found(key, names=_FILE_NAMES):
    """The message of the command line, which has no data_home, when data set ``key`` (or
    its files ``names``) is found nowhere: its ways to get the data are its options."""
    searched = [(d, origin, [n for n in _files_in(d)[1] if n in names])
                for d, origin in _search_dirs(key, None)]
    return _not_found_message(key, None, searched, command_line=True, names=names)


def _not_found_message(key, data_home, searched, command_line=False, names=_FILE_NAMES):
    spec = _DATASETS[key]
    fn = spec.function
    which = "four files" if len(names) == 4 else "two test files"
    lines = [
        f"{spec.title} was not found. fastmlp looks for the {which} "
        f"{', '.join(names[:-1])} and {names[-1]} (or the same names without .gz) in:"
    ]
    if data_home is None and not command_line:
        lines.append("  - data_home: not given")
    if not os.environ.get("FASTMLP_DATA"):
        lines.append("  - $FASTMLP_DATA: not set")
    for directory, origin, missing in searched:
        if not os.path.isdir(directory):
            state = "not a directory" if os.path.exists(directory) else "does not exist"
        elif len(missing) == len(names):
            state = "no data files"
        else:
            state = "incomplete, missing " + ", ".join(missing)
        lines.append(f"  - {directory} ({origin}): {state}")
    target = _download_dir(key, data_home)
    lines.append("To get the data, do one of:")
    if spec.apt:
        lines.append(f"  - install the system package: sudo apt-get install {spec.apt}")
    if command_line:
        lines += [
            f"  - download it: add --download to the command (saves to {target})",
            "  - put the four files in a directory DIR and add --data-dir DIR, or set the "
            "environment variable FASTMLP_DATA=DIR",
        ]
    else:
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


def _fetch(url, f, name, limits, show_progress, advice):
    """Stream url into the open file f; returns the MD5 hex digest of what was written.

    ``limits`` is (seconds, max_bytes): the deadline of the whole transfer and the most
    bytes the file may have (None: no cap). Every failure is an ``OSError`` whose message
    names the URL and gives the ``advice``.
    """
    timeout, max_bytes = limits
    md5 = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "fastmlp"})
    got = _Transfer(name, show_progress)
    with _net.Deadline(timeout) as deadline:
        try:
            # The deadline, not a socket timeout, ends a transfer that takes too long.
            with _net.opener(deadline).open(request, timeout=timeout + 1) as response:
                length = response.headers.get("Content-Length")
                got.total = int(length) if length and length.isdigit() else None
                if got.total is not None and max_bytes is not None and got.total > max_bytes:
                    raise _TooLarge(f"the server announces {got.total} bytes")
                _stream(response, f, md5, got, max_bytes)
        except _TooLarge as exc:  # raised here, the OSError is not caught below
            raise OSError(
                f"could not download {url}: {exc}, but {name} has {max_bytes}; the mirror "
                f"serves another file, and nothing was saved"
            ) from None
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response
            raise OSError(f"could not download {url}: HTTP {exc.code} {exc.reason}. Get the "
                          f"files another way ({advice.elsewhere})") from exc
        except (OSError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise OSError(_too_slow(url, timeout, got, advice)) from exc
            reason = getattr(exc, "reason", None) or exc
            raise OSError(
                f"could not download {url}: {reason}. {advice.network}, or get the files "
                f"another way ({advice.elsewhere})"
            ) from exc
        finally:
            got.end()
    if deadline.expired:  # the end of the data may be the deadline's doing
        raise OSError(_too_slow(url, timeout, got, advice))
    if got.total is not None and got.done != got.total:
        raise OSError(
            f"download of {url} was cut short: received {got.done} of {got.total} bytes"
        )
    return md5.hexdigest()


class _TooLarge(Exception):
    """The server sends or announces more bytes than the file has."""


class _Transfer:
    """Bytes received so far and announced (None: unknown), shown as a progress bar."""

    def __init__(self, name, show_progress):
        self.name, self.show_progress = name, show_progress
        self.done, self.total = 0, None
        self._drawn = 0.0

    def add(self, n):
        self.done += n
        if self.show_progress and time.monotonic() - self._drawn > 0.1:
            self._drawn = time.monotonic()
            _progress.draw_transfer(self.name, self.done, self.total)

    def end(self):
        if self.show_progress:  # the final state stays on screen
            _progress.draw_transfer(self.name, self.done, self.total)
            _progress.end_line()

    def __str__(self):
        return f"{self.done} of {self.total}" if self.total is not None else f"{self.done}"


def _stream(response, f, md5, got, max_bytes):
    """Copy the body into f. Reading stops at the first byte past max_bytes (an endless
    body is cut there) with ``_TooLarge``."""
    while True:
        want = 1 << 16
        if max_bytes is not None:
            if got.done > max_bytes:
                raise _TooLarge(f"the server sent more than {max_bytes} bytes")
            want = min(want, max_bytes + 1 - got.done)
        chunk = response.read(want)
        if not chunk:
            return
        f.write(chunk)
        md5.update(chunk)
        got.add(len(chunk))


def _too_slow(url, timeout, got, advice):
    return (
        f"could not download {url}: the file did not arrive within timeout={timeout:g} s "
        f"(received {got} bytes); {advice.slow}, or get the files another way "
        f"({advice.elsewhere})"
    )


def _download(key, target, base_url, timeout, verbose, advice=None, names=None):
    """Fetch the missing files (of ``names``, None: all four) into target: all of them
    land, or none does. Failure messages give ``advice`` (by default the loaders').

    Each file is streamed to a hidden temporary file in ``target`` and its MD5 checked;
    only when every file is complete and correct are they renamed into place. On any
    failure the temporary files (and directories this call created) are removed.
    """
    spec = _DATASETS[key]
    # Beyond about 1e9 s the deadline timer overflows the platform's time.
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or not 0 < timeout <= 1e9:
        raise ValueError(f"timeout must be a positive number of seconds (at most 1e9), got "
                         f"{timeout!r}")
    if base_url is not None and not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str or None, got {type(base_url).__name__}")
    base = (base_url if base_url is not None else spec.url).rstrip("/") + "/"
    checksums = CHECKSUMS[key]
    advice = advice or _advice(key)
    show_progress = _progress.stderr_is_terminal() if verbose is None else bool(verbose)
    created = []
    d = os.path.abspath(target)
    while not os.path.isdir(d):
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(target, exist_ok=True)
    missing = [n for n in _files_in(target)[1] if names is None or n in names]
    pending = []  # a StagedFile per file fetched so far
    try:
        for name in missing:
            url = base + name
            staged = StagedFile(os.path.join(target, name))
            pending.append(staged)
            with staged.write() as f:
                limits = (timeout, SIZES[key].get(name))
                digest = _fetch(url, f, name, limits, show_progress, advice)
            expected = checksums.get(name)
            if expected is not None and digest != expected:
                raise OSError(
                    f"checksum mismatch for {url}: MD5 {digest}, expected {expected}; the "
                    f"download is corrupt or the mirror has changed, and nothing was saved"
                )
        for staged in pending:
            staged.commit()
    except BaseException:
        for staged in pending:
            staged.discard()
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

    target_names = np.asarray(spec.target_names)
    counts = np.bincount(target, minlength=10)
    classes = "\n".join(
        f"  {i}  {name:<12} {counts[i]:>6} training images" for i, name in enumerate(target_names)
    )
    descr = "\n".join(
        [
            spec.title,
            "=" * len(spec.title),
            "",
            textwrap.fill(spec.what, 88),
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
    from sklearn.utils import Bunch  # imported here: scikit-learn takes seconds to import

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
    data_home: str | os.PathLike | None = None,
    *,
    download: bool = False,
    return_X_y: bool = False,
    base_url: str | None = None,
    timeout: float = 300,
    verbose: bool | None = None,
) -> Bunch | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        The mirror to download from; by default Zalando's repository,
        ``https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/``
        (``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/`` holds the same
        files).
    timeout : float, default=300
        Seconds each file's download may take in all (connecting, headers and body); a
        slower download fails with an ``OSError``. Whatever the server sends, a download
        also stops at the first byte beyond the file's size in :data:`SIZES`.
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
    data_home: str | os.PathLike | None = None,
    *,
    download: bool = False,
    return_X_y: bool = False,
    base_url: str | None = None,
    timeout: float = 300,
    verbose: bool | None = None,
) -> Bunch | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    timeout : float, default=300
        Seconds each file's download may take in all (see :func:`load_fashion_mnist`).
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


# -- CIFAR-10 ---------------------------------------------------------------------------

_CIFAR_KEY = "cifar-10"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
# (directory or archive, member folder, batch-name suffix, pickled), in lookup order.
_CIFAR_LAYOUTS = (
    ("cifar-10-batches-bin", None, ".bin", False),
    ("cifar-10-batches-py", None, "", True),
    ("cifar-10-binary.tar.gz", "cifar-10-batches-bin", ".bin", False),
    ("cifar-10-python.tar.gz", "cifar-10-batches-py", "", True),
)


class _CifarSource:
    """The batches of one CIFAR-10 copy: a folder of batch files, or the archive holding
    that folder (read member by member, never extracted)."""

    def __init__(self, path, member_dir, suffix, pickled):
        self.path, self.member_dir, self.suffix, self.pickled = path, member_dir, suffix, pickled

    @classmethod
    def find(cls, directory):
        """The first CIFAR-10 copy in directory (or in its cifar-10-batches-* folder)."""
        for name, member_dir, suffix, pickled in _CIFAR_LAYOUTS:
            if member_dir is not None:
                archive = os.path.join(directory, name)
                if os.path.isfile(archive):
                    return cls(archive, member_dir, suffix, pickled)
                continue
            for folder in (os.path.join(directory, name), directory):
                if os.path.isfile(os.path.join(folder, _CIFAR_TRAIN[0] + suffix)):
                    return cls(folder, None, suffix, pickled)
        return None

    def read_all(self):
        """{batch name: bytes} of the five training batches, the test batch and the meta."""
        names = [*_CIFAR_TRAIN, _CIFAR_TEST]
        files = {n: n + self.suffix for n in names}
        files["meta"] = "batches.meta" if self.pickled else "batches.meta.txt"
        if self.member_dir is None:
            out = {}
            for key, file in files.items():
                with open(os.path.join(self.path, file), "rb") as f:
                    out[key] = f.read()
            return out
        import tarfile

        wanted = {f"{self.member_dir}/{file}": key for key, file in files.items()}
        out = {}
        with tarfile.open(self.path, "r:gz") as tar:
            for member in tar:
                key = wanted.get(member.name)
                if key is not None and member.isfile():
                    out[key] = tar.extractfile(member).read()
        missing = [m for m, key in wanted.items() if key not in out]
        if missing:
            raise ValueError(f"{self.path} lacks {', '.join(missing)}")
        return out


def load_cifar10(data_home=None, *, return_X_y=False, channels_last=True):
    """Load CIFAR-10: 50000 training and 10000 test colour images, 32x32, 10 classes.

    Either distribution is read: the binary version (``cifar-10-binary.tar.gz``, or its
    folder ``cifar-10-batches-bin``) or the Python version (``cifar-10-python.tar.gz``, or
    ``cifar-10-batches-py``). The Python version's batches are pickles; they are **not
    unpickled**: fastmlp reads their opcodes itself and accepts only the dicts, lists,
    strings, numbers and NumPy arrays a batch consists of, so a tampered file cannot run
    code. Archives are read in place, not extracted. Each is looked for in ``data_home``,
    ``$FASTMLP_DATA``, ``/usr/share/datasets`` and the user cache (each directly and in a
    ``cifar-10`` subdirectory), as for :func:`load_fashion_mnist`. fastmlp does not
    download CIFAR-10: get an archive from https://www.cs.toronto.edu/~kriz/cifar.html.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        A directory searched first.
    return_X_y : bool, default=False
        Return ``(X_train, y_train, X_test, y_test)`` instead of a Bunch.
    channels_last : bool, default=True
        Images as ``(n, 32, 32, 3)`` and rows of ``data`` in (H, W, C) order; False keeps
        the files' ``(n, 3, 32, 32)`` (and (C, H, W) rows).

    Returns
    -------
    dataset : sklearn.utils.Bunch
        ``data`` uint8 (50000, 3072), ``images`` (the same pixels as images), ``target``
        int64 (50000,), ``data_test``, ``images_test``, ``target_test`` (10000 images),
        ``target_names`` (10,), ``DESCR``, ``filenames`` (the copy read).
    (X_train, y_train, X_test, y_test) : tuple of ndarray
        With ``return_X_y=True``: ``data``, ``target``, ``data_test``, ``target_test``.

    Raises
    ------
    FileNotFoundError
        If no copy is found; the message lists the places searched.
    ValueError
        If a batch is malformed, or a pickle holds anything but a batch's data.

    Examples
    --------
    >>> from fastmlp import MLPImageClassifier, PixelScaler
    >>> from fastmlp.datasets import load_cifar10
    >>> ds = load_cifar10()  # doctest: +SKIP
    >>> ds.images.shape  # doctest: +SKIP
    (50000, 32, 32, 3)
    >>> scaler = PixelScaler(mode="standard", per_channel=True)
    >>> model = MLPImageClassifier(input_scaler=scaler)  # doctest: +SKIP
    >>> model.fit(ds.images, ds.target)  # doctest: +SKIP
    """
    searched = []
    for directory, origin in _search_dirs(_CIFAR_KEY, data_home):
        source = _CifarSource.find(directory)
        if source is not None:
            return _cifar_bunch(source, return_X_y, channels_last)
        searched.append(f"  - {directory} ({origin})")
    names = ", ".join(name for name, *_ in _CIFAR_LAYOUTS)
    raise FileNotFoundError(
        f"CIFAR-10 was not found. fastmlp looks for one of {names} in:\n"
        + "\n".join(searched)
        + "\nDownload an archive from https://www.cs.toronto.edu/~kriz/cifar.html into a "
        "directory DIR and call load_cifar10(data_home=DIR), or set FASTMLP_DATA=DIR.")


def _cifar_bunch(source, return_X_y, channels_last):
    from sklearn.utils import Bunch

    raw = source.read_all()
    read = _cifar.read_pickled_batch if source.pickled else _cifar.read_binary_batch
    train = [read(raw[n], os.path.join(source.path, n)) for n in _CIFAR_TRAIN]
    images = np.concatenate([b[0] for b in train])
    target = np.concatenate([b[1] for b in train])
    images_test, target_test = read(raw[_CIFAR_TEST], os.path.join(source.path, _CIFAR_TEST))
    names = _cifar.read_label_names(raw["meta"], os.path.join(source.path, "meta"),
                                    source.pickled)
    if channels_last:  # (n, 3, 32, 32) -> (n, 32, 32, 3), one copy each
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        images_test = np.ascontiguousarray(images_test.transpose(0, 2, 3, 1))
    data, data_test = images.reshape(len(images), -1), images_test.reshape(len(images_test), -1)
    if return_X_y:
        return data, target, data_test, target_test
    layout = "(n, 32, 32, 3)" if channels_last else "(n, 3, 32, 32)"
    return Bunch(
        data=data, images=images, target=target, data_test=data_test,
        images_test=images_test, target_test=target_test, target_names=np.array(names),
        DESCR=(f"CIFAR-10: {len(data)} training and {len(data_test)} test colour images, "
               f"32x32 RGB, uint8, images {layout}; 10 classes: {', '.join(names)}. "
               f"Read from {source.path}."),
        filenames={"source": source.path})
