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
import os
import re
import tokenize
import zipfile
import zlib
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ._atomic import atomic_file
from ._npy import declared_and_held

if TYPE_CHECKING:  # for annotations only: scikit-learn loads when a model is saved or read
    from sklearn.pipeline import Pipeline

    from .estimator import MLPImageClassifier

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "LOADABLE_CLASSES", "METADATA_KEYS", "load",
           "save"]

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

def save(model: MLPImageClassifier | Pipeline, path: str | os.PathLike[str], *,
         include_optimizer_state: bool = False, metadata: dict[str, Any] | None = None
         ) -> None:
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
        JSON-serializable data stored with the model; ``load(path, return_metadata=True)``
        returns it. The keys the command line writes (``dataset``, ``target_names``,
        ``image_shape``, ``architecture``, ``config``, ``history``, ``final``) must have
        the types it gives them, since it reads them back: see :data:`METADATA_KEYS`.

    Raises
    ------
    TypeError
        If ``model`` is not one of the supported estimators, or holds a parameter or
        attribute the format cannot represent (e.g. a custom object), or ``metadata`` is
        not JSON-serializable.
    ValueError
        If ``metadata`` is not a dict, or gives a key of :data:`METADATA_KEYS` a value
        of another type.
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
            header["metadata"] = json.loads(json.dumps(metadata, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
        problem = _metadata_problem(header["metadata"])
        if problem:  # load would refuse the file
            raise ValueError(f"metadata: {problem}")
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

@overload
def load(path: str | os.PathLike[str], *,
         return_metadata: Literal[False] = False) -> MLPImageClassifier | Pipeline: ...


@overload
def load(path: str | os.PathLike[str], *, return_metadata: Literal[True]
         ) -> tuple[MLPImageClassifier | Pipeline, dict[str, Any]]: ...


@overload
def load(path: str | os.PathLike[str], *, return_metadata: bool
         ) -> MLPImageClassifier | Pipeline | tuple[MLPImageClassifier | Pipeline,
                                                     dict[str, Any]]: ...


def load(path: str | os.PathLike[str], *, return_metadata: bool = False
         ) -> MLPImageClassifier | Pipeline | tuple[MLPImageClassifier | Pipeline,
                                                     dict[str, Any]]:
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
        If the file is not a fastmlp model file, is corrupt or truncated (its metadata
        included: not a dict, or a key of :data:`METADATA_KEYS` of another type), was
        written by a newer fastmlp (a newer format version), or names a class or
        parameter this fastmlp does not know.
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
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"{path} is corrupt or truncated: {exc}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a fastmlp model file (it is a single .npy "
                             f"array)")
        with archive:
            model, metadata = _read_archive(archive, path)
    return (model, metadata) if return_metadata else model


def _read_archive(archive, path):
    """(model, metadata) from an open archive; ValueError for anything amiss in it."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        header = _read_header(archive, path)
        model = _Reader(archive, path).estimator(header["model"], "model")
    except _FormatError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError,
            TypeError, AttributeError, IndexError, OverflowError, RecursionError,
            NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError) as exc:
        # A damaged member fails its CRC check (a damaged array header may fail NumPy's
        # parse of it first); a damaged zip header may name a zip version or compression
        # method zipfile lacks, or set the encryption flag (RuntimeError); damaged JSON
        # values fail where used.
        raise ValueError(f"{path} is corrupt or truncated: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise _FormatError(f"{path} holds a model that is not fitted") from None
    metadata = header.get("metadata")
    problem = _metadata_problem({} if metadata is None else metadata)
    if problem:
        raise _FormatError(f"{path} has corrupt metadata: {problem}")
    return model, metadata or {}


def _read_header(archive, path):
    if _HEADER not in archive.files:
        raise _FormatError(f"{path} is not a fastmlp model file (no header)")
    raw = archive[_HEADER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _FormatError(f"{path} is not a fastmlp model file (bad header)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
        try:
            est._validate_params()
        except ValueError as exc:  # scikit-learn's InvalidParameterError
            self.fail(f"{where}: {exc}")
        private = PRIVATE_STATE.get(cls.__name__, ())
        for k, v in node.get("fitted", {}).items():
            if k in known or not (_FITTED_NAME.match(k) or k in private):
                self.fail(f"{where} sets the attribute {k!r}, which is not a fitted one")
            setattr(est, k, self.value(v, f"{where}.{k}"))
        _FITTED_CHECKS[cls.__name__](est, set(node.get("fitted", {})),
                                     lambda what: self.fail(f"{where}: {what}"))
        return est

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
        self._check_size(key, where)
        a = self.archive[key]
        return a.astype(object) if node.get("object") else a

    def _check_size(self, key, where):
        """Fail for an array whose header declares other than the bytes its member
        holds, before NumPy allocates what it declares."""
        info = self.archive.zip.getinfo(key + ".npy")
        with self.archive.zip.open(info) as f:
            sizes = declared_and_held(f, info.file_size)
        if sizes is not None and sizes[0] != sizes[1]:
            self.fail(f"the array {key!r} of {where} declares {sizes[0]} bytes of values, "
                      f"but holds {sizes[1]}")

    def _float(self, text, node, where):
        if text not in ("inf", "-inf", "nan"):
            self.fail(f"{where}: bad float {text!r}")
        return float(text)

    def _random_state(self, body, node, where):
        kind, keys, pos, has_gauss, cached = body
        keys = self.value(keys, where)
        # NumPy takes a position past its 624 keys and crashes on the next draw.
        if (kind != "MT19937" or not isinstance(keys, np.ndarray) or keys.shape != (624,)
                or keys.dtype != np.uint32 or not _is_int(pos, 0, 624)
                or has_gauss not in (0, 1) or not _is_real(cached)):
            self.fail(f"{where} is not a random state")
        rng = np.random.RandomState()
        rng.set_state((kind, keys, pos, has_gauss, cached))
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


# --------------------------------------------------------------------------------------
# What a loaded model must hold
# --------------------------------------------------------------------------------------
# A model file may come from anywhere, and prediction and further training hand its
# arrays to the compiled core. So each estimator's fitted attributes are checked for the
# type, shape and range that fitting leaves them in, and for consistency with each other,
# before load returns: an estimator holds all of them, or none (an unfitted parameter).


def _is_int(v, low, high=None):
    return (isinstance(v, Integral) and not isinstance(v, bool) and v >= low
            and (high is None or v <= high))


def _is_real(v):
    return isinstance(v, Real) and not isinstance(v, bool)


def _optional(check):
    return lambda v: v is None or check(v)


def _reals(v):
    return isinstance(v, list) and all(_is_real(x) for x in v)


def _count(low=0):
    return lambda v: _is_int(v, low)


def _finite_arrays(dtype, ndim):
    """A non-empty list of finite arrays of this dtype and number of dimensions."""
    def check(v):
        return isinstance(v, list) and len(v) > 0 and all(
            isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim and a.size
            and np.isfinite(a).all() for a in v)
    return check


def _statistic(v):
    return _finite_arrays(np.float64, 1)([v])


def _labels(v):
    return (isinstance(v, np.ndarray) and v.ndim == 1 and v.size >= 2
            and v.dtype.kind in "biufUO" and np.array_equal(np.unique(v), v))


def _names(v):
    return (isinstance(v, np.ndarray) and v.ndim == 1
            and all(isinstance(x, str) for x in v.flat))


def _check_fitted(est, fitted, required, optional, fail):
    """Whether est is fitted; fail unless it holds all of ``required`` (or nothing)
    and each attribute there or in ``optional`` passes its ``(check, description)``."""
    if not fitted:
        return False
    missing = sorted(set(required) - fitted)
    if missing:
        fail(f"it lacks the fitted attribute(s) {', '.join(missing)}")
    for name, (check, what) in {**required, **optional}.items():
        if name in fitted and not check(getattr(est, name)):
            fail(f"{name} is not {what}")
    return True


_COMMON = {"n_features_in_": (_count(1), "a positive integer")}
_FEATURE_NAMES = {"feature_names_in_": (_names, "a 1-D array of strings")}
_IMAGE_SHAPE = {"image_shape_in_": (
    _optional(lambda v: isinstance(v, tuple) and len(v) in (2, 3)
              and all(_is_int(s, 1) for s in v)),
    "None or a tuple of 2 or 3 positive integers")}
_SCALER = {
    **_COMMON,
    "offset_": (_statistic, "a non-empty finite float64 vector"),
    "scale_": (_statistic, "a non-empty finite float64 vector"),
    "mean_": (_optional(_statistic), "None or a finite float64 vector"),
    "var_": (_optional(_statistic), "None or a finite float64 vector"),
}
_CLASSIFIER = {
    **_COMMON,
    "classes_": (_labels, "a sorted 1-D array of at least 2 distinct labels"),
    "coefs_": (_finite_arrays(np.float32, 2), "a list of finite float32 matrices"),
    "intercepts_": (_finite_arrays(np.float32, 1), "a list of finite float32 vectors"),
    "_rng": (lambda v: isinstance(v, np.random.RandomState), "a random state"),
    "_noise_seed": (_optional(lambda v: _is_int(v, 0, 2**63 - 1)),
                    "None or a seed in [0, 2**63)"),
    "n_iter_": (_count(), "a count"),
    "t_": (_count(), "a count"),
    "_no_improvement_count": (_count(), "a count"),
    "loss_curve_": (_reals, "a list of numbers"),
    "loss_": (_optional(_is_real), "None or a number"),
    "history_": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
                 "a list of dicts"),
    "best_loss_": (_optional(_is_real), "None or a number"),
    "validation_scores_": (_optional(_reals), "None or a list of numbers"),
    "validation_loss_curve_": (_optional(_reals), "None or a list of numbers"),
    "best_validation_score_": (_optional(_is_real), "None or a number"),
    "n_layers_": (_count(2), "a layer count"),
    "n_outputs_": (_count(2), "a class count"),
    "out_activation_": (lambda v: v == "softmax", "'softmax'"),
    "input_scaler_": (lambda v: v is None or type(v).__name__ == "PixelScaler",
                      "None or a PixelScaler"),
}


def _finish_scaler(est, fitted, fail):
    if not _check_fitted(est, fitted, _SCALER, _FEATURE_NAMES, fail):
        return
    n = est.scale_.shape[0]
    if (est.offset_.shape != (n,) or est.n_features_in_ % n or not (est.scale_ > 0).all()
            or any(s is not None and s.shape != (n,) for s in (est.mean_, est.var_))):
        fail(f"its statistics (offset_ {est.offset_.shape}, scale_ {est.scale_.shape}, "
             f"positive: {bool((est.scale_ > 0).all())}) do not fit "
             f"{est.n_features_in_} features")
    _check_feature_names(est, fail)


def _finish_classifier(est, fitted, fail):
    """Checked, and the arrays the core reads and updates in place laid out as fit
    leaves them."""
    from ._memory import cache_aligned
    from ._optim import OptimizerState

    # image_shape_in_ is optional: files written before fastmlp kept it lack it, and
    # their models take images of any shape of their width, as they did.
    optional = {**_FEATURE_NAMES, **_IMAGE_SHAPE, _OPTIMIZER_STATE: (
        _optional(lambda v: isinstance(v, OptimizerState)), "None or an optimizer state")}
    if not _check_fitted(est, fitted, _CLASSIFIER, optional, fail):
        return
    sizes = [est.n_features_in_] + [b.shape[0] for b in est.intercepts_]
    shapes = [c.shape for c in est.coefs_]
    if (len(shapes) != len(sizes) - 1 or sizes[-1] != len(est.classes_)
            or shapes != list(zip(sizes[:-1], sizes[1:]))):
        fail(f"the layer shapes {shapes} do not chain from {est.n_features_in_} features "
             f"to {len(est.classes_)} classes")
    if (est.n_layers_, est.n_outputs_) != (len(shapes) + 1, len(est.classes_)):
        fail(f"n_layers_={est.n_layers_} and n_outputs_={est.n_outputs_} do not match the "
             f"{len(shapes)} weight matrices and {len(est.classes_)} classes")
    image_shape = getattr(est, "image_shape_in_", None)
    if image_shape is not None and math.prod(image_shape) != est.n_features_in_:
        fail(f"image_shape_in_ {image_shape} does not hold {est.n_features_in_} features")
    scaler = est.input_scaler_
    if scaler is not None and getattr(scaler, "n_features_in_", None) != est.n_features_in_:
        fail("input_scaler_ is not fitted to the classifier's features")
    _check_feature_names(est, fail)
    est.coefs_ = [cache_aligned(c) for c in est.coefs_]
    est.intercepts_ = [cache_aligned(b) for b in est.intercepts_]
    est._optimizer_state = getattr(est, _OPTIMIZER_STATE, None)  # None: warm_start anew
    if est._optimizer_state is not None:
        _check_optimizer_state(est._optimizer_state, est, fail)
    est._seal_bf16()


def _check_optimizer_state(state, est, fail):
    from ._optim import OPTIMIZERS

    def same_layout(arrays, like):
        return (_finite_arrays(np.float32, like[0].ndim)(arrays) and len(arrays) == len(like)
                and all(a.shape == b.shape for a, b in zip(arrays, like)))

    steps = state.steps
    if (state.solver not in OPTIMIZERS or not _is_real(state.learning_rate)
            or not 0 <= state.learning_rate < math.inf
            or not isinstance(state.slots, dict)
            or not all(isinstance(w, list) and isinstance(b, list)
                       and same_layout(w, est.coefs_) and same_layout(b, est.intercepts_)
                       for w, b in state.slots.values())
            or steps.shape != (1,) or steps[0] < 0
            or not _is_int(state.schedule_t0, 0, int(steps[0]))):
        fail("_optimizer_state does not fit the model's layers (solver "
             f"{state.solver!r}, {len(state.slots)} state slot(s))")


def _check_feature_names(est, fail):
    names = getattr(est, "feature_names_in_", None)
    if names is not None and names.shape != (est.n_features_in_,):
        fail(f"feature_names_in_ has {names.shape[0]} names for {est.n_features_in_} "
             f"features")


def _finish_pipeline(est, fitted, fail):
    """A Pipeline of PixelScalers (or "passthrough") ending in an MLPImageClassifier."""
    from .estimator import MLPImageClassifier
    from .preprocessing import PixelScaler

    steps = est.steps
    if not (isinstance(steps, list) and steps
            and all(isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str)
                    and "__" not in s[0] for s in steps)
            and len({name for name, _ in steps}) == len(steps)):
        fail("its steps are not (name, estimator) pairs of distinct names")
    *scalers, (_, clf) = steps
    if not isinstance(clf, MLPImageClassifier) or not all(
            isinstance(s, PixelScaler) or s in (None, "passthrough") for _, s in scalers):
        fail("a model file's Pipeline holds PixelScalers (or 'passthrough') and ends in an "
             "MLPImageClassifier")
    width = getattr(clf, "n_features_in_", None)
    if any(isinstance(s, PixelScaler) and getattr(s, "n_features_in_", None) != width
           for _, s in scalers):
        fail("its steps are not fitted to the same number of features")


_FITTED_CHECKS = {"MLPImageClassifier": _finish_classifier, "PixelScaler": _finish_scaler,
                  "Pipeline": _finish_pipeline}


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------
# The metadata is the user's, but the command line reads back the keys it writes
# (``fastmlp train --resume``, ``evaluate``, ``predict``): each of those must hold what
# it wrote, or the file is refused as corrupt instead of failing deep inside a command.
# Other keys are not looked at.

def _choice(*options):
    return (lambda v: isinstance(v, str) and v in options,
            "one of " + ", ".join(repr(o) for o in options))


def _number(low=0.0, high=math.inf, low_open=False, high_open=False):
    def check(v):
        return (_is_real(v) and math.isfinite(v) and (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return check, f"a number in {left}{low:g}, {high:g}{right}"


def _integer(low, high=None):
    what = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return (lambda v: _is_int(v, low, high)), what


def _nullable(check_what):
    check, what = check_what
    return (lambda v: v is None or check(v)), f"null or {what}"


_STRING = (lambda v: isinstance(v, str), "a string")
_BOOLEAN = (lambda v: isinstance(v, bool), "true or false")
_DICTS = (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
          "a list of objects")

#: The command line's run options in ``metadata["config"]``, as (check, description).
#: The choices are those of ``fastmlp train`` (tests/test_io.py checks that they agree).
CONFIG_KEYS = {
    "dataset": _STRING,  # the command line says which names it knows
    "data_dir": _nullable(_STRING),
    "hidden": (lambda v: isinstance(v, list) and all(_is_int(h, 1, 2**31 - 1) for h in v),
               "a list of layer widths (integers in [1, 2147483647])"),
    "activation": _choice("identity", "logistic", "relu", "sigmoid", "tanh"),
    "init": _choice("glorot", "pytorch"),
    "normalize": _choice("none", "unit", "symmetric", "standard"),
    "solver": _choice("sgd", "adam"),
    "lr": _number(low_open=True),
    "momentum": _number(0.0, 1.0),
    "nesterov": _BOOLEAN,
    "alpha": _number(),
    "batch_size": _integer(1),
    "epochs": _integer(1),
    "early_stopping": _BOOLEAN,
    "patience": _integer(1),
    "seed": _nullable(_integer(0, 2**32 - 1)),  # null: no integer random_state
    "threads": _nullable(_integer(1)),
    "preset": _nullable(_STRING),
    "lr_schedule": _choice("constant", "cosine"),
    "warmup_epochs": _number(),
    "dropout": _number(0.0, 1.0, high_open=True),
    "weight_decay": _number(),
    "label_smoothing": _number(0.0, 1.0, high_open=True),
    "random_shift": _integer(0),
    "random_flip": _BOOLEAN,
    "precision": _choice("float32", "bfloat16"),
    "validation_data": (lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(
        isinstance(p, str) for p in v)), "null or a list of two paths"),
}

#: The metadata keys the command line writes, as (check, description).
METADATA_KEYS = {
    "dataset": _STRING,
    "target_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
                     "a list of strings"),
    "image_shape": (lambda v: v is None or (isinstance(v, list) and len(v) in (2, 3)
                                            and all(_is_int(n, 1) for n in v)),
                    "null or a list of 2 or 3 positive integers"),
    "architecture": _STRING,
    "config": (lambda v: isinstance(v, dict), "an object"),
    "history": _DICTS,
    "final": (lambda v: isinstance(v, dict), "an object"),
}


def _metadata_problem(metadata):
    """What is wrong with a metadata value (``"config.activation must be ..."``), or
    None."""
    if not isinstance(metadata, dict):
        return f"it must be an object (a dict), got {_json_type(metadata)}"
    for table, value, prefix in ((METADATA_KEYS, metadata, ""),
                                 (CONFIG_KEYS, metadata.get("config"), "config.")):
        if not isinstance(value, dict):
            continue
        for key, (check, what) in table.items():
            if key in value and not check(value[key]):
                return f"{prefix}{key} must be {what}, got {_shown(value[key])}"
    return None


def _json_type(v):
    for types, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"),
                        (list, "a list"), (dict, "an object")):
        if isinstance(v, types):
            return name
    return "null" if v is None else type(v).__name__


def _shown(v):
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."
