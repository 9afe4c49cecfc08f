"""A model file without pickle: :func:`save` and :func:`load`.

A model file is a NumPy ``.npz`` archive (an uncompressed zip of ``.npy`` arrays) holding

- ``header``: UTF-8 JSON as a uint8 array: the format's name and version, the fastmlp
  version that wrote it, optional user metadata, and the model as a tree of
  ``{"class", "params", "fitted"}`` nodes: each estimator's class name, its
  ``get_params(deep=False)`` and its fitted attributes. Values that JSON cannot hold
  exactly are tagged one-key objects: ``{"__array__": name}`` (an array of the archive),
  ``{"__tuple__": [...]}``, ``{"__float__": "inf"}``, ``{"__dict__": [[key, value], ...]}``
  (dicts whose keys are not plain strings), ``{"__estimator__": node}`` (an estimator
  nested in a parameter or a fitted attribute), ``{"__random_state__": [...]}`` and
  ``{"__optimizer_state__": {...}}``.
- one array per weight, bias and other array attribute, named after its place in the tree.

Reading uses ``np.load(allow_pickle=False)`` and ``json``; only the classes in
:data:`LOADABLE_CLASSES` are ever instantiated, with their own constructors, so a model
file cannot run code. Files are written atomically: a crash or Ctrl-C while saving leaves
the previous file as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
import zlib
from numbers import Integral, Real

import numpy as np

from ._atomic import atomic_file

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "LOADABLE_CLASSES", "load", "save"]

FORMAT_NAME = "fastmlp-model"
#: The newest format version this fastmlp reads and the one it writes.
FORMAT_VERSION = 1
#: The classes a model file may name, by the name it uses for them.
LOADABLE_CLASSES = ("fastmlp.MLPImageClassifier", "fastmlp.PixelScaler",
                    "sklearn.pipeline.Pipeline")

_HEADER = "header"
# Private attributes that are part of a fitted model, per class: what warm_start and
# partial_fit continue from. Other private attributes (caches, callbacks) are not saved;
# tests/test_io.py fails when the estimator gains one that is not listed here or there.
PRIVATE_STATE = {
    "MLPImageClassifier": ("_optimizer_state", "_rng", "_noise_seed",
                           "_no_improvement_count"),
}
_OPTIMIZER_STATE = "_optimizer_state"
# Fitted attribute names a file may set: scikit-learn's trailing-underscore names.
_FITTED_NAME = re.compile(r"^[a-z][a-z0-9_]*_$")


class _FormatError(ValueError):
    """A file that is not, or no longer, a readable model file."""


def _registry():
    from sklearn.pipeline import Pipeline

    from .estimator import MLPImageClassifier
    from .preprocessing import PixelScaler

    classes = dict(zip(LOADABLE_CLASSES, (MLPImageClassifier, PixelScaler, Pipeline)))
    return classes, {cls: name for name, cls in classes.items()}


# --------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------

def save(model, path, *, include_optimizer_state=False, metadata=None):
    """Write a fitted model to ``path`` in fastmlp's pickle-free format.

    Parameters
    ----------
    model : MLPImageClassifier or Pipeline
        A fitted :class:`~fastmlp.MLPImageClassifier`, or a fitted scikit-learn
        ``Pipeline`` of a :class:`~fastmlp.PixelScaler` (or ``"passthrough"``) and an
        ``MLPImageClassifier``, as ``make_pipeline`` builds it.
    path : str or os.PathLike
        The file to write, used as given (``.fastmlp`` is the customary ending; the
        content is a NumPy ``.npz`` archive). It is replaced atomically.
    include_optimizer_state : bool, default=False
        Also save the optimizer's state (Adam's moments, the SGD velocity, the step
        count), so that ``warm_start`` and ``partial_fit`` after :func:`load` continue
        bitwise as the original would. Without it the file is about the size of the
        parameters (Adam's state doubles that), predictions are the same, and further
        training starts the optimizer afresh from the saved weights.
    metadata : dict, optional
        JSON-serializable data stored with the model (the command line keeps the data
        set and the class names here); ``load(path, return_metadata=True)`` returns it.

    Raises
    ------
    TypeError
        If ``model`` is not one of the supported estimators, or holds a parameter or
        attribute the format cannot represent (e.g. a custom object).
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted.
    OSError
        If the file cannot be written; the previous file, if any, is left as it was.

    See Also
    --------
    load : the inverse.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastmlp
    >>> X = np.random.default_rng(0).random((40, 16), dtype=np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> clf = fastmlp.MLPImageClassifier((8,), random_state=0).partial_fit(X, y, [0, 1])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.fastmlp")
    >>> fastmlp.save(clf, path, metadata={"note": "a first try"})
    >>> loaded, metadata = fastmlp.load(path, return_metadata=True)
    >>> bool((loaded.predict_proba(X) == clf.predict_proba(X)).all()), metadata["note"]
    (True, 'a first try')
    """
    from sklearn.utils.validation import check_is_fitted

    from . import __version__

    _, names = _registry()
    if type(model) not in names:
        raise TypeError(f"fastmlp.save saves an MLPImageClassifier or a Pipeline of a "
                        f"PixelScaler and an MLPImageClassifier, not a "
                        f"{type(model).__module__}.{type(model).__qualname__}")
    check_is_fitted(model)
    writer = _Writer(names, include_optimizer_state)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "fastmlp_version": __version__,
              "optimizer_state": bool(include_optimizer_state),
              "model": writer.estimator(model, "model")}
    if metadata is not None:
        try:
            header["metadata"] = json.loads(json.dumps(metadata))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    arrays = {_HEADER: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **writer.arrays}
    with atomic_file(path) as f:
        np.savez(f, **arrays)


class _Writer:
    """Turns an estimator tree into JSON values, collecting its arrays by name."""

    def __init__(self, class_names, include_optimizer_state):
        self.class_names = class_names
        self.include_optimizer_state = include_optimizer_state
        self.arrays = {}

    def estimator(self, est, path):
        name = self.class_names.get(type(est))
        if name is None:
            raise TypeError(f"cannot save {path}: a {type(est).__qualname__}; model files "
                            f"hold only {', '.join(LOADABLE_CLASSES)}")
        params = {k: self.value(v, f"{path}.{k}")
                  for k, v in est.get_params(deep=False).items()}
        fitted = {k: self.value(v, f"{path}.{k}") for k, v in self._fitted(est, params)}
        return {"class": name, "params": params, "fitted": fitted}

    def _fitted(self, est, params):
        private = PRIVATE_STATE.get(type(est).__name__, ())
        for k, v in vars(est).items():
            if k in params or not (_FITTED_NAME.match(k) or k in private):
                continue
            if k == _OPTIMIZER_STATE and not self.include_optimizer_state:
                continue
            yield k, v

    def value(self, v, path):
        """The JSON form of v; its arrays go to self.arrays under names from path."""
        from sklearn.base import BaseEstimator

        from ._optim import OptimizerState

        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, Integral):
            return int(v)
        if isinstance(v, Real):
            v = float(v)
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.ndarray):
            return self.array(v, path)
        if isinstance(v, (tuple, list)):
            items = [self.value(x, f"{path}.{i}") for i, x in enumerate(v)]
            return {"__tuple__": items} if isinstance(v, tuple) else items
        if isinstance(v, dict):
            return self._dict(v, path)
        if isinstance(v, np.random.RandomState):
            kind, keys, pos, has_gauss, cached = v.get_state(legacy=True)
            return {"__random_state__": [kind, self.array(keys, f"{path}.keys"), int(pos),
                                         int(has_gauss), float(cached)]}
        if isinstance(v, OptimizerState):
            return {"__optimizer_state__": {
                f.name: self.value(getattr(v, f.name), f"{path}.{f.name}")
                for f in dataclasses.fields(v)}}
        if isinstance(v, BaseEstimator):
            return {"__estimator__": self.estimator(v, path)}
        raise TypeError(f"cannot save {path}: a model file cannot hold a "
                        f"{type(v).__module__}.{type(v).__qualname__}")

    def _dict(self, d, path):
        if all(isinstance(k, str) and not k.startswith("__") for k in d):
            return {k: self.value(x, f"{path}.{k}") for k, x in d.items()}
        return {"__dict__": [[self.value(k, f"{path}.key{i}"), self.value(x, f"{path}.{i}")]
                             for i, (k, x) in enumerate(d.items())]}

    def array(self, a, path):
        ref = {"__array__": path}
        if a.dtype.hasobject:
            # Object arrays would need pickle; scikit-learn keeps feature names and
            # string labels in them, which unicode arrays hold as well.
            if a.dtype != object or not all(isinstance(x, str) for x in a.flat):
                raise TypeError(f"cannot save {path}: an object array of values other "
                                f"than strings")
            a = a.astype(str)
            ref["object"] = True
        self.arrays[path] = a
        return ref


# --------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------

def load(path, *, return_metadata=False):
    """Read a model written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        A model file written by :func:`save` (or ``fastmlp train --save``).
    return_metadata : bool, default=False
        Also return the ``metadata`` dict given to :func:`save` (empty if none).

    Returns
    -------
    model : MLPImageClassifier or Pipeline
        The fitted model. Its predictions are bitwise those of the saved model.
    metadata : dict
        Only with ``return_metadata=True``.

    Raises
    ------
    ValueError
        If the file is not a fastmlp model file, is corrupt or truncated, was written by
        a newer fastmlp (a newer format version), or names a class or parameter this
        fastmlp does not know.
    OSError
        If the file cannot be opened.

    See Also
    --------
    save : the inverse.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastmlp
    >>> X = np.random.default_rng(0).random((40, 16), dtype=np.float32)
    >>> y = np.arange(40) % 3
    >>> clf = fastmlp.MLPImageClassifier((8,), random_state=0).partial_fit(X, y, [0, 1, 2])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.fastmlp")
    >>> fastmlp.save(clf, path, include_optimizer_state=True)
    >>> fastmlp.load(path).partial_fit(X, y).n_iter_  # training continues where it was
    2
    """
    path = str(path)
    # The file is opened here, not by np.load, which leaves it open when it is no zip.
    with open(path, "rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
        except ValueError:  # a pickle (np.load never unpickles here), or not NumPy at all
            raise ValueError(f"{path} is not a fastmlp model file (not a NumPy .npz "
                             f"archive)") from None
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path} is corrupt or truncated: {exc}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a fastmlp model file (it is a single .npy "
                             f"array)")
        with archive:
            model, metadata = _read_archive(archive, path)
    return (model, metadata) if return_metadata else model


def _read_archive(archive, path):
    """(model, metadata) from an open archive; ValueError for anything amiss in it."""
    try:
        header = _read_header(archive, path)
        model = _Reader(archive, path).estimator(header["model"], "model")
        return model, header.get("metadata") or {}
    except _FormatError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError,
            TypeError, AttributeError, IndexError) as exc:
        # A damaged member fails its CRC check; damaged JSON values fail where used.
        raise ValueError(f"{path} is corrupt or truncated: "
                         f"{type(exc).__name__}: {exc}") from None


def _read_header(archive, path):
    if _HEADER not in archive.files:
        raise _FormatError(f"{path} is not a fastmlp model file (no header)")
    raw = archive[_HEADER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _FormatError(f"{path} is not a fastmlp model file (bad header)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _FormatError(f"{path} is corrupt: its header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise _FormatError(f"{path} is not a fastmlp model file (the header names no "
                           f"{FORMAT_NAME!r} format)")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _FormatError(f"{path} is corrupt: bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise _FormatError(
            f"{path} was written by fastmlp {header.get('fastmlp_version', '?')} in model "
            f"file format {version}; this fastmlp reads formats up to {FORMAT_VERSION}: "
            f"upgrade fastmlp to load it")
    for key in ("model",):
        if key not in header:
            raise _FormatError(f"{path} is corrupt: its header has no {key!r}")
    return header


class _Reader:
    """Builds the estimator tree of a header, taking arrays from the archive."""

    def __init__(self, archive, path):
        self.archive = archive
        self.path = path
        self.classes, _ = _registry()

    def fail(self, what):
        raise _FormatError(f"{self.path} is corrupt or not a model of this fastmlp: {what}")

    def estimator(self, node, where):
        if not isinstance(node, dict) or not {"class", "params"} <= set(node):
            self.fail(f"{where} is not an estimator")
        cls = self.classes.get(node["class"])
        if cls is None:
            self.fail(f"{where} names the class {node['class']!r}; model files hold only "
                      f"{', '.join(LOADABLE_CLASSES)}")
        known = set(cls._get_param_names())
        params = {k: self.value(v, f"{where}.{k}") for k, v in node["params"].items()}
        unknown = sorted(set(params) - known)
        if unknown:
            self.fail(f"{cls.__name__} has no parameter {', '.join(unknown)} (written by "
                      f"another fastmlp version?)")
        est = cls(**params)
        private = PRIVATE_STATE.get(cls.__name__, ())
        for k, v in node.get("fitted", {}).items():
            if k in known or not (_FITTED_NAME.match(k) or k in private):
                self.fail(f"{where} sets the attribute {k!r}, which is not a fitted one")
            setattr(est, k, self.value(v, f"{where}.{k}"))
        if cls.__name__ == "MLPImageClassifier" and hasattr(est, "coefs_"):
            self._finish_classifier(est, where)
        return est

    def _finish_classifier(self, est, where):
        """The arrays the core reads and updates in place, laid out as fit leaves them,
        and a shape check (a crafted file must not reach the core inconsistent)."""
        from ._memory import cache_aligned

        est.coefs_ = [cache_aligned(c) for c in est.coefs_]
        est.intercepts_ = [cache_aligned(b) for b in est.intercepts_]
        if not hasattr(est, _OPTIMIZER_STATE):
            est._optimizer_state = None  # saved without it: warm_start starts it afresh
        sizes = [est.n_features_in_] + [b.shape[0] for b in est.intercepts_]
        shapes = [c.shape for c in est.coefs_]
        if (len(shapes) != len(sizes) - 1 or sizes[-1] != len(est.classes_)
                or shapes != list(zip(sizes[:-1], sizes[1:]))):
            self.fail(f"{where}: the layer shapes {shapes} do not chain from "
                      f"{est.n_features_in_} features to {len(est.classes_)} classes")
        est._seal_bf16()

    def value(self, v, where):
        if isinstance(v, list):
            return [self.value(x, where) for x in v]
        if not isinstance(v, dict):
            return v
        tags = [k for k in v if k.startswith("__")]
        if not tags:
            return {k: self.value(x, f"{where}.{k}") for k, x in v.items()}
        tag, body = tags[0], v[tags[0]]
        decode = self._TAGS.get(tag)
        if decode is None:
            self.fail(f"{where} has an unknown value tag {tag!r}")
        return decode(self, body, v, where)

    def _array(self, key, node, where):
        if key not in self.archive.files:
            self.fail(f"the array {key!r} of {where} is missing")
        a = self.archive[key]
        return a.astype(object) if node.get("object") else a

    def _float(self, text, node, where):
        if text not in ("inf", "-inf", "nan"):
            self.fail(f"{where}: bad float {text!r}")
        return float(text)

    def _random_state(self, body, node, where):
        kind, keys, pos, has_gauss, cached = body
        rng = np.random.RandomState()
        rng.set_state((kind, np.asarray(self.value(keys, where), dtype=np.uint32), pos,
                       has_gauss, cached))
        return rng

    def _optimizer_state(self, body, node, where):
        from ._memory import cache_aligned
        from ._optim import OptimizerState

        fields = {k: self.value(x, f"{where}.{k}") for k, x in body.items()}
        fields["slots"] = {name: ([cache_aligned(a) for a in w], [cache_aligned(a) for a in b])
                           for name, (w, b) in fields["slots"].items()}
        fields["steps"] = np.array(fields["steps"], dtype=np.int64)  # a writable copy
        return OptimizerState(**fields)

    _TAGS = {
        "__array__": _array,
        "__float__": _float,
        "__tuple__": lambda self, body, node, where: tuple(self.value(body, where)),
        "__dict__": lambda self, body, node, where: {
            self.value(k, where): self.value(x, where) for k, x in body},
        "__estimator__": lambda self, body, node, where: self.estimator(body, where),
        "__random_state__": _random_state,
        "__optimizer_state__": _optimizer_state,
    }
