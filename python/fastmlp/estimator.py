"""MLPImageClassifier: a multilayer perceptron whose training loop runs in C++.

The estimator keeps every parameter and optimizer state as NumPy float32 arrays, so
``clone``, pickle, joblib and ``warm_start`` behave as for any scikit-learn estimator; the
compiled core reads and updates them in place, one chunk of batches per call, with the GIL
released. Randomness (initialization, shuffling, the validation split) is drawn here from
``random_state``; the core is deterministic given its inputs, so a fixed ``random_state``
gives bitwise-identical weights with any number of threads.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import assert_all_finite, check_random_state, compute_sample_weight
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
)
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core, _progress
from ._callbacks import TRANSIENT_ATTRIBUTES, CallbackSupportMixin, FitTasks
from ._input import fit_input_scaler, pixel_input
from ._memory import cache_aligned
from ._optim import OPTIMIZERS, make_optimizer
from ._progress import clear_line
from ._sklearn import fit_context, integers
from ._stacklevel import user_stacklevel
from ._training import (
    FLOAT32_BELOW_ONE,
    FLOAT32_TINY,
    BestWeights,
    ChunkSizer,
    EpochTotals,
    FitRecord,
    ReadAhead,
    Run,
    TrainingData,
    ValidationData,
    block_rows,
    core_precision,
    epoch_order,
    float32_normal,
    float32_range_text,
    float32_rate,
    image_geometry,
    penalty_overshoot,
    train_options,
)
from .exceptions import TrainingDivergedError, TrainingInterruptedWarning
from .kernels import ACTIVATIONS
from .preprocessing import _FLOAT32_MAX, PixelScaler

__all__ = ["MLPImageClassifier", "TrainingDivergedError"]


# Rows per call into the core at prediction (float32 copies of at most this many rows).
_PREDICT_BLOCK_ROWS = 32768
# The fitted attributes a warm-start or partial_fit call continues from.
_CONTINUED_STATE = ("classes_", "intercepts_", "n_features_in_", "_optimizer_state", "_rng",
                    "n_iter_", "t_", "loss_curve_", "history_", "best_loss_",
                    "_no_improvement_count", "validation_scores_",
                    "validation_loss_curve_", "best_validation_score_")
# The dtypes prediction passes to the core without scikit-learn's validation (native
# byte order: dtype equality tells '<f4' from '>f4').
_PLAIN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))

# The type of fit's self and result: a subclass's fit returns the subclass (typing.Self,
# spelled so on Python before 3.11).
_Self = TypeVar("_Self", bound="MLPImageClassifier")


def _as_images(X):
    """A list or tuple of images (each (H, W) or 3-D, e.g. ``[img]``) as one array, so it
    passes as an (n, H, W[, C]) array does; anything else, a ragged list included, as
    given."""
    if isinstance(X, (list, tuple)):
        try:
            arr = np.asarray(X)
        except ValueError:  # ragged: scikit-learn's validation words the error
            return X
        if arr.ndim > 2:
            return arr
    return X


def _image_shape(X):
    """The shape of X's images, ``X.shape[1:]``, when X is an image array (3-D or 4-D);
    None for rows (2-D X, a data frame) and for what validation will refuse. ValueError
    beyond 4 dimensions, which no image layout has."""
    if not hasattr(X, "__array__") or hasattr(X, "columns"):
        return None
    shape = getattr(X, "shape", None)
    if not isinstance(shape, tuple):  # np.shape would refuse what defines only __array__
        shape = np.asarray(X).shape
    if len(shape) > 4:
        raise ValueError(
            "Expected X of shape (n_samples, n_features), (n, H, W), (n, H, W, C) or "
            f"(n, C, H, W); got an array with {len(shape)} dimensions.")
    return tuple(int(v) for v in shape[1:]) if len(shape) > 2 else None


def _flatten_images(X):
    """(rows, image shape): images (n, H, W), (n, H, W, C) or (n, C, H, W) as rows
    (n, H*W*C) and ``X.shape[1:]``; anything else as given and None."""
    X = _as_images(X)
    shape = _image_shape(X)
    if shape is None:
        return X, None
    arr = np.asarray(X)
    return arr.reshape(arr.shape[0], -1), shape


def _sample_weight(sample_weight, n, name="sample_weight"):
    """The weights as a new float64 (n,) array (the caller's is never written), or None.

    A scalar weighs every sample alike; the weights must be finite, non-negative and not
    all zero."""
    if sample_weight is None:
        return None
    w = np.array(sample_weight, dtype=np.float64)  # a copy, also of pandas and lists
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{name}.shape == {w.shape}, expected ({n},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    if not np.any(w > 0):
        raise ValueError(f"{name}: sample weights must contain at least one non-zero number")
    return w


def _training_weights(weight, name):
    """weight (float64 (n,), or None) as the float32 the core reads. Weights that are not
    finite or negative (a class_weight of NaN or -1), that float32 cannot hold (beyond its
    range, all zero once rounded, or non-zero but below its smallest normal number, which
    the core's arithmetic may flush to zero) are refused: they would train on infinities
    or NaN, or silently on nothing."""
    if weight is None:
        return None
    if not np.isfinite(weight).all():
        raise ValueError(f"the training weights ({name}) are not all finite: "
                         f"{_first_bad(weight, ~np.isfinite(weight))}")
    if (weight < 0).any():
        raise ValueError(f"the training weights ({name}) must be non-negative: "
                         f"{_first_bad(weight, weight < 0)}")
    with np.errstate(over="ignore"):
        w = weight.astype(np.float32)
    if not np.isfinite(w).all():  # the core sums them in float64
        raise ValueError(f"the training weights ({name}) exceed float32's range (3.4e38), "
                         "the precision the model trains in; scale them down")
    if not (w > 0).any():
        raise ValueError(f"the training weights ({name}) are all zero in float32, the "
                         "precision the model trains in: nothing would be learned")
    tiny = (weight > 0) & (weight < FLOAT32_TINY)
    if tiny.any():
        raise ValueError(
            f"the training weights ({name}) must be 0 or at least float32's smallest normal "
            f"number ({FLOAT32_TINY:.3g}), the precision the model trains in, where smaller "
            f"ones vanish: {_first_bad(weight, tiny)}; scale the weights up, or set those "
            f"of samples that should not count to 0")
    return w


def _check_class_weight(class_weight):
    """ValueError naming the class of a class_weight dict whose weight is not a finite,
    non-negative number."""
    if not isinstance(class_weight, dict):
        return
    for label, value in class_weight.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise ValueError(f"class_weight[{label!r}] must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ValueError(f"class_weight[{label!r}] is {number!r}: class weights must be "
                             "finite (not NaN or infinity)")
        if number < 0:
            raise ValueError(f"class_weight[{label!r}] is {number!r}: class weights must be "
                             "non-negative")


def _first_bad(weight, bad):
    """E.g. "1e-44 (sample 3) and 9 more", for an error message."""
    where = np.flatnonzero(bad)
    more = f" and {len(where) - 1} more" if len(where) > 1 else ""
    return f"{float(weight[where[0]])!r} (sample {where[0]}){more}"


def _given_validation(early_stopping, X_val, y_val, sample_weight_val):
    """fit's validation arguments as (X_val, y_val, sample_weight_val), or None."""
    if X_val is None and y_val is None:
        if sample_weight_val is not None:
            raise ValueError("sample_weight_val needs X_val and y_val")
        return None
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val must be given together")
    if not early_stopping:
        raise ValueError("X_val and y_val are only used by early stopping; set "
                         "early_stopping=True")
    return X_val, y_val, sample_weight_val


def _start_validation(record):
    """A record that will watch a validation set: it gets curves, and no best loss."""
    if record.validation_scores is None:
        record.validation_scores, record.validation_loss_curve = [], []
    record.best_loss = None


def _stop_validation(record):
    """A record that watches no validation set: no validation curves nor best score, as
    after a first fit without early stopping, also when an earlier fit (continued with
    warm_start or partial_fit) had them."""
    record.validation_scores = record.validation_loss_curve = None
    record.best_validation_score = None


class ModelSummary:
    """Per-layer table of a network: layer, output shape, parameter count.

    ``rows`` holds ``(layer, output_shape, n_params)`` tuples; ``total_params`` their sum.
    Printing (or ``repr`` in a notebook) shows the table.
    """

    def __init__(self, rows):
        self.rows = list(rows)
        self.total_params = sum(r[2] for r in self.rows)

    def __str__(self):
        head = ("Layer (type)", "Output Shape", "Param #")
        cells = [(name, str(shape), f"{n:,}") for name, shape, n in self.rows]
        w = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(3)]
        rule = "-" * (w[0] + w[1] + w[2] + 6)
        header = f"{head[0]:<{w[0]}}   {head[1]:<{w[1]}}   {head[2]:>{w[2]}}"
        lines = [rule, header, "=" * len(rule)]
        lines += [f"{a:<{w[0]}}   {b:<{w[1]}}   {c:>{w[2]}}" for a, b, c in cells]
        lines += ["=" * len(rule), f"Total params: {self.total_params:,}",
                  f"Trainable params: {self.total_params:,}", rule]
        return "\n".join(lines)

    __repr__ = __str__


class MLPImageClassifier(CallbackSupportMixin, ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier for images, trained by a C++/OpenMP core.

    The network is ``Flatten -> [Linear -> activation] * len(hidden_layer_sizes) ->
    Linear -> softmax``, trained on the softmax cross-entropy with mini-batch SGD or Adam.
    Parameter names and meanings follow scikit-learn's ``MLPClassifier``; the defaults are
    chosen for image data scaled by :class:`fastmlp.PixelScaler`.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(256,)
        Width of each hidden layer; ``()`` gives softmax regression.
    activation : {"relu", "logistic", "tanh", "identity"}, default="relu"
        Activation of the hidden layers.
    solver : {"adam", "sgd"}, default="adam"
        Optimizer of the weights.
    alpha : float, default=1e-4
        L2 penalty: ``0.5 * alpha * ||W||^2`` is added to each batch's loss, divided by the
        batch's total sample weight. Biases are not penalized.
    batch_size : int or "auto", default="auto"
        Samples per mini-batch. "auto" is ``clip(n_samples // 16, 16, 128)`` (at most
        ``n_samples``): batches of 128 where data is plentiful, and at least 16 steps per
        epoch on small data sets.
    learning_rate : {"constant", "invscaling", "adaptive", "cosine"}, default="constant"
        Schedule of the step size. "cosine" (both solvers): a linear warmup over
        ``warmup_epochs`` epochs, then a cosine decay from ``learning_rate_init`` to 0
        over the rest of ``max_iter`` epochs, updated at every step; step ``s`` of a fit
        runs at ``lr * s / S_w`` during the ``S_w`` warmup steps and at
        ``lr * (1 + cos(pi * (s - S_w - 1) / (S - S_w))) / 2`` after them, ``S`` the fit's
        steps. SGD only: "invscaling": ``learning_rate_init / (t_ + 1) ** power_t`` after
        each epoch; "adaptive": divide by 5 whenever ``n_iter_no_change`` epochs did not
        improve.
    learning_rate_init : float, default=1e-3
        Initial step size; like ``epsilon`` and a non-zero ``alpha``, it must lie in
        float32's range of normal numbers (about 1.2e-38 to 3.4e38), the precision the
        model trains in.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule. A rate that underflows float64 becomes
        its smallest positive number (5e-324, 0 in float32).
    max_iter : int, default=20
        Epochs per call to ``fit``.
    shuffle : bool or "block", default=True
        Whether to shuffle the samples at every epoch. "block": permute blocks of
        consecutive samples (about 32 MB of X each), then the samples inside each block;
        for X memory-mapped from a file larger than the page cache, each block is then
        read from disk in one piece (and asked for ahead of the core) instead of image by
        image at random. Batches mix fewer distant samples than with True.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, shuffling and the validation split.
    tol : float, default=1e-4
        Improvement below which an epoch counts as not improving.
    verbose : bool, default=False
        Print one line per epoch to stdout, and on a terminal a progress bar over the
        epoch's batches to stderr (in a Jupyter notebook, ``tqdm.auto``'s bar when tqdm
        is installed).
    warm_start : bool, default=False
        Continue from the previous fit's weights and optimizer state (Adam's moments
        and the SGD velocity are kept).
    momentum : float, default=0.9
        SGD momentum; ignored by "adam".
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with SGD; ignored by "adam".
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified: each class
        needs at least 2 samples, and the held-out share at least one per class, or fit
        raises as scikit-learn's ``MLPClassifier`` does), stop when the validation metric
        has not improved for ``n_iter_no_change`` epochs, and restore the best weights.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping`` is on.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float, default=1e-8
        Adam's denominator offset.
    n_iter_no_change : int or np.inf, default=10
        Epochs without improvement of more than ``tol`` before stopping.
    early_stopping_metric : {"accuracy", "loss"}, default="accuracy"
        What early stopping watches on the validation set.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn's linear classifiers:
        finite and non-negative. "balanced" is computed from fit's y, and not
        supported with ``partial_fit`` (pass the weights as a dict).
    weight_init : {"glorot", "pytorch"}, default="glorot"
        "glorot": uniform in ``±sqrt(6 / (fan_in + fan_out))`` (``±sqrt(2 / ...)`` for
        logistic) for weights and biases; "pytorch": uniform in ``±1/sqrt(fan_in)``.
    n_threads : int or None, default=None
        Threads of the core; None follows OpenMP's setting, which ``OMP_NUM_THREADS`` and
        ``threadpoolctl.threadpool_limits`` control. Results do not depend on it.
    warmup_epochs : float, default=0.0
        Epochs of linear warmup of the "cosine" schedule; ignored by the other schedules.
    dropout : float or sequence of float, default=0.0
        Inverted dropout on the hidden layers' activations during training: one rate in
        [0, 1) (at most 0.99999994, below 1 in float32) for every hidden layer, or a
        sequence of exactly one rate per hidden layer; without hidden layers
        (``hidden_layer_sizes=()``) it must be 0. Masks are drawn by counter from
        (``random_state``, step, sample, unit), so results do not depend on the thread
        count.
    weight_decay : float, default=0.0
        Decoupled weight decay (both solvers; with Adam this is AdamW): before each step
        the weights (not the biases) shrink as ``W *= 1 - lr * weight_decay``, ``lr`` the
        step's learning rate. ``alpha`` stays the coupled L2 penalty.
    label_smoothing : float, default=0.0
        Train against ``(1 - label_smoothing) * onehot + label_smoothing / n_classes``;
        in [0, 1), and below 1 once rounded to float32 (at most 0.99999994).
    random_shift : int, default=0
        Shift each training image by up to this many pixels in each axis (uniform, per
        sample and epoch), filling from the border; done while the core gathers a batch.
    random_flip : bool, default=False
        Mirror each training image horizontally with probability 1/2.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)`` (channels last) of 2-D X's rows, for the augmentations;
        images given as 3-D or 4-D arrays bring their own.
    input_scaler : PixelScaler or None, default=None
        Scale the pixels inside the core, while it gathers each batch, instead of in a
        pipeline step: X is read in its own dtype (uint8 images stay uint8, a
        memory-mapped array stays on disk) and no float32 copy of it is made, in ``fit``,
        ``partial_fit``, early stopping's validation split and prediction. The results
        are bitwise those of ``make_pipeline(input_scaler, MLPImageClassifier(...))``.
        ``fit`` fits a clone of it on X (as a pipeline would, also with
        ``warm_start``); ``partial_fit`` fits it on the first call only. The fitted
        scaler is ``input_scaler_``.
    precision : {"float32", "bfloat16"}, default="float32"
        The arithmetic of the matrix products, in training and prediction. "bfloat16"
        rounds their operands (inputs, activations, weights, gradients) to bfloat16 and
        sums the products in float32, with float32 master weights, optimizer state, loss
        and softmax: with AMX-BF16 it trains about twice as fast as float32, with
        AVX512-BF16 faster on AMD Zen 4 and 5 but not on every CPU (time both), for an
        accuracy within noise of float32. Without either it warns
        (:class:`~fastmlp.PrecisionWarning`) and computes in float32. Results are
        bitwise reproducible for any thread count on one kernel (AMX, or AVX512-BF16);
        the two kernels round alike but sum in different orders. A bfloat16 model keeps
        a bfloat16 copy of ``coefs_`` for prediction, made when training ends, so its
        ``coefs_`` arrays are read-only: assign new arrays to change them.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    image_shape_in_ : tuple of int or None
        ``X.shape[1:]`` of the image arrays (3-D or 4-D X) of the fit that started the
        model, None when it was given rows (2-D X). Image arrays of another shape given
        to prediction, ``partial_fit`` or a ``warm_start`` fit are refused
        (``ValueError``): flattened, their pixels would be in another order. Rows of
        ``n_features_in_`` values are always taken.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X had string column names.
    coefs_ : list of ndarray of float32, coefs_[i] of shape (fan_in, fan_out)
    intercepts_ : list of ndarray of float32, intercepts_[i] of shape (fan_out,)
    loss_ : float
        Training loss of the last epoch (``loss_curve_[-1]``).
    loss_curve_ : list of float
        Training loss of each epoch (mean over its batches as trained, with the penalty).
    validation_scores_ : list of float or None
        Validation accuracy per epoch when ``early_stopping``, continued over
        ``warm_start`` fits that keep it on; None after a fit (or ``partial_fit``)
        without early stopping, also one that continues a fit which had it.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch when ``early_stopping``, like ``validation_scores_``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``; None when that is None.
    best_loss_ : float or None
        Lowest training loss (None with early stopping).
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``accuracy`` (training, averaged over the epoch's
        batches), ``learning_rate``, ``time`` (seconds), and with early stopping
        ``val_loss`` and ``val_accuracy``.
    n_iter_ : int
        Epochs trained, counted over every ``fit`` with ``warm_start`` and every
        ``partial_fit`` (scikit-learn's ``MLPClassifier`` counts the last ``fit``'s only):
        the epoch numbers of ``history_`` and the schedules run on from it.
    t_ : int
        Training samples seen.
    n_layers_ : int
        Layers including input and output.
    n_outputs_ : int
        Output units: the number of classes, also 2 for binary problems, whose network
        ends in a 2-unit softmax (``MLPClassifier`` uses one logistic unit; the two give
        the same probabilities for ``z_1 - z_0``).
    out_activation_ : str
        "softmax".
    input_scaler_ : PixelScaler or None
        The fitted clone of ``input_scaler`` that prediction applies; None without one.

    Notes
    -----
    Where fastmlp differs from scikit-learn's ``MLPClassifier`` on purpose:

    - It trains with ``"sgd"`` or ``"adam"`` (no ``"lbfgs"``), on dense binary or
      multiclass data (no sparse X, no multilabel y), in float32 whatever X's dtype
      (``coefs_`` are float32 arrays).
    - ``n_iter_`` counts the epochs of every ``fit`` with ``warm_start`` and of every
      ``partial_fit``, not those of the last call only; ``max_iter`` epochs are trained
      per call to ``fit`` in both.
    - A binary problem ends in a 2-unit softmax (``n_outputs_ == 2``), not in one
      logistic unit, so a model whose output layer has a single unit is not one that
      fastmlp can continue training.
    - ``y`` must hold at least two classes (``MLPClassifier`` also fits one).
    - ``warm_start`` keeps the optimizer's state (Adam's moments, SGD's velocity).

    ``_optimizer.learning_rate`` is the current learning rate, as in ``MLPClassifier``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastmlp import MLPImageClassifier, PixelScaler
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = make_pipeline(PixelScaler(mode="unit", max_value=16),
    ...                     MLPImageClassifier(max_iter=30, random_state=0))
    >>> clf.fit(X[:1500], y[:1500]).score(X[1500:], y[1500:]) > 0.9
    True
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(OPTIMIZERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), integers(1)],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive", "cosine"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [integers(1)],
        "shuffle": ["boolean", StrOptions({"block"})],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [integers(1), Options(Real, {np.inf})],
        "early_stopping_metric": [StrOptions({"accuracy", "loss"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "weight_init": [StrOptions({"glorot", "pytorch"})],
        "n_threads": [integers(1), None],
        "warmup_epochs": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "random_shift": [integers(0)],
        "random_flip": ["boolean"],
        "image_shape": ["array-like", None],
        "input_scaler": [PixelScaler, None],
        "precision": [StrOptions({"float32", "bfloat16"})],
    }

    def __init__(
        self,
        hidden_layer_sizes: ArrayLike = (256,),
        activation: Literal["relu", "logistic", "tanh", "identity"] = "relu",
        *,
        solver: Literal["adam", "sgd"] = "adam",
        alpha: float = 1e-4,
        batch_size: int | Literal["auto"] = "auto",
        learning_rate: Literal["constant", "invscaling", "adaptive", "cosine"] = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        max_iter: int = 20,
        shuffle: bool | Literal["block"] = True,
        random_state: int | np.random.RandomState | None = None,
        tol: float = 1e-4,
        verbose: bool | int = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int | float = 10,
        early_stopping_metric: Literal["accuracy", "loss"] = "accuracy",
        class_weight: dict | Literal["balanced"] | None = None,
        weight_init: Literal["glorot", "pytorch"] = "glorot",
        n_threads: int | None = None,
        warmup_epochs: float = 0.0,
        dropout: ArrayLike = 0.0,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
        random_shift: int = 0,
        random_flip: bool = False,
        image_shape: tuple[int, ...] | None = None,
        input_scaler: PixelScaler | None = None,
        precision: Literal["float32", "bfloat16"] = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping_metric = early_stopping_metric
        self.class_weight = class_weight
        self.weight_init = weight_init
        self.n_threads = n_threads
        self.warmup_epochs = warmup_epochs
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.random_shift = random_shift
        self.random_flip = random_flip
        self.image_shape = image_shape
        self.input_scaler = input_scaler
        self.precision = precision

    # ----------------------------------------------------------------------------------
    # Public API
    # ----------------------------------------------------------------------------------

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self: _Self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
            *, X_val: ArrayLike | None = None, y_val: ArrayLike | None = None,
            sample_weight_val: ArrayLike | None = None,
            callback: Callable[[MLPImageClassifier, dict], bool | None] | None = None
            ) -> _Self:
        """Train for ``max_iter`` epochs (fewer if training stops early).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Training samples, or images (n, H, W), (n, H, W, C) or (n, C, H, W),
            flattened in C order. Any real dtype; scale pixels first (see
            :class:`fastmlp.PixelScaler`), or let ``input_scaler`` do it.
        y : array-like of shape (n_samples,)
            Class labels of any type.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss (multiplied by
            ``class_weight``'s); None weighs every sample 1. Each batch's loss is the
            weighted mean over its samples. With early stopping on a split of X, the held
            out samples keep their weights in the validation loss and accuracy.
        X_val, y_val : array-like, default=None
            With ``early_stopping=True``: the validation set to watch instead of a random
            ``validation_fraction`` of X (all of X is then trained on). Only with
            early stopping.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples in the validation loss and accuracy.
        callback : callable, optional
            Called as ``callback(estimator, info)`` after every chunk of batches
            (``info["event"] == "progress"``, with ``epoch``, ``samples_done``,
            ``n_samples``) and after every epoch (``"epoch"``, with the epoch's
            ``history_`` entry). ``estimator.coefs_`` is current during the epoch call
            (its values may be changed in place; assigning new arrays to it, or changing
            a parameter, raises ValueError). Progress calls see the model as of the
            last epoch's end: before the first one, that of the previous fit, or on a
            first fit none (``predict`` raises scikit-learn's NotFittedError).
            Returning True stops training after the current epoch.

        Returns
        -------
        self : MLPImageClassifier
            The estimator, fitted.
        """
        validation = _given_validation(self.early_stopping, X_val, y_val, sample_weight_val)
        return self._fit(X, y, sample_weight, incremental=False, classes=None,
                         callback=callback, validation=validation)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self: _Self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None,
                    sample_weight: ArrayLike | None = None) -> _Self:
        """Train for one epoch over (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Training samples of any real dtype, scaled as for :meth:`fit`, or images
            (n, H, W), (n, H, W, C) or (n, C, H, W) of the shape the model was fitted on
            (``image_shape_in_``), flattened in C order.
        y : array-like of shape (n_samples,)
            Class labels, each one of ``classes``.
        classes : array-like of shape (n_classes,), default=None
            All the classes of the problem. Required on the first call; on later calls
            it may be omitted, and if given must equal the first call's.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples, as in :meth:`fit`.

        Returns
        -------
        self : MLPImageClassifier
            The estimator, updated in place.
        """
        # scikit-learn checks the parameters on the first call only; they may have been
        # set since, and the core trusts what it is given.
        self._validate_params()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            # Each call sees one batch of the data: weights balanced per call would
            # differ from call to call, and from those of the whole data set.
            raise ValueError(
                "class_weight='balanced' is not supported with partial_fit: it would be "
                "computed from each call's samples, not the whole data set's. Compute the "
                "weights once, e.g. with sklearn.utils.class_weight.compute_class_weight"
                "('balanced', classes=classes, y=y_all), and pass them as a dict")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes,
                         callback=None, validation=None)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Estimate the probability of each class for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Samples scaled as for :meth:`fit`, or images (n, H, W), (n, H, W, C) or
            (n, C, H, W) of the shape fit was given (``image_shape_in_``), flattened in
            C order.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float64
            Softmax probabilities in the order of ``classes_``; each row sums to 1.
        """
        proba = self._forward(X, log=False).astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Estimate the logarithm of the probability of each class for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Samples scaled as for :meth:`fit`, or images (n, H, W), (n, H, W, C) or
            (n, C, H, W) of the shape fit was given (``image_shape_in_``), flattened in
            C order.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), dtype float64
            Natural logarithms of the class probabilities, in the order of ``classes_``:
            ``np.log(predict_proba(X))`` where a probability is positive, and where one
            rounds to 0 the log-softmax of the logits, so they stay finite.
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            log_proba = np.log(proba)
        zero = proba == 0
        if zero.any():
            log_proba[zero] = self._forward(X, log=True)[zero]
        return log_proba

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Samples scaled as for :meth:`fit`, or images (n, H, W), (n, H, W, C) or
            (n, C, H, W) of the shape fit was given (``image_shape_in_``), flattened in
            C order.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            For each sample, the class of ``classes_`` with the highest probability.
        """
        logp = self._forward(X, log=True)
        return self.classes_[logp.argmax(axis=1)]

    def summary(self, n_features: int | None = None,
                n_classes: int | None = None) -> ModelSummary:
        """Describe the network layer by layer: output shape and parameter count.

        Fitted estimators describe themselves; before fitting pass ``n_features`` and
        ``n_classes``.

        Parameters
        ----------
        n_features : int, default=None
            Number of input features (``H * W * C`` for images). None takes
            ``n_features_in_`` of the fitted estimator.
        n_classes : int, default=None
            Number of output units, one per class (two for a binary problem). None takes
            ``n_outputs_`` of the fitted estimator.

        Returns
        -------
        summary : ModelSummary
            Prints as a table; ``rows`` and ``total_params`` for programs.
        """
        if n_features is None or n_classes is None:
            check_is_fitted(self)
            n_features = self.n_features_in_ if n_features is None else n_features
            n_classes = self.n_outputs_ if n_classes is None else n_classes
        sizes = [int(n_features), *self._hidden_sizes(), int(n_classes)]
        rows = [("Flatten", (None, sizes[0]), 0)]
        label = _core.ACTIVATION_LABELS[self.activation]
        for i in range(len(sizes) - 1):
            rows.append((f"Linear({sizes[i]}, {sizes[i + 1]})", (None, sizes[i + 1]),
                         sizes[i] * sizes[i + 1] + sizes[i + 1]))
            if i + 2 < len(sizes) and self.activation != "identity":
                rows.append((label, (None, sizes[i + 1]), 0))
        return ModelSummary(rows)

    @property
    def _optimizer(self):
        """The optimizer state under scikit-learn's ``MLPClassifier`` name, for code that
        reads ``_optimizer.learning_rate`` (the current learning rate) from it."""
        return self._optimizer_state

    def __sklearn_is_fitted__(self):
        """Fitted once a fit has committed weights. During the first fit, which sets
        ``n_features_in_`` before it trains, a callback's ``predict`` is then
        scikit-learn's NotFittedError until the first epoch's weights are committed."""
        return "coefs_" in vars(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        tags.input_tags.three_d_array = True  # image arrays (n, H, W) and 4-D are flattened
        return tags

    # ----------------------------------------------------------------------------------
    # Validation and state
    # ----------------------------------------------------------------------------------

    # Parameters the core computes with in float32: (name, whether 0 is allowed). A value
    # that is positive in float64 but 0 or subnormal in float32 (learning_rate_init=1e-320)
    # would train nothing, and one beyond float32's range (epsilon=1e300) would be
    # infinite there.
    _FLOAT32_PARAMETERS = (("learning_rate_init", False), ("epsilon", False),
                           ("alpha", True))

    def _validate_params(self):
        """scikit-learn's checks of the parameter table, then the float32 range of the
        parameters the core computes with (InvalidParameterError, a ValueError)."""
        super()._validate_params()
        for name, zero_ok in self._FLOAT32_PARAMETERS:
            value = getattr(self, name)
            ok, single = float32_normal(value, zero_ok)
            if not ok:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be "
                    f"{'non-negative' if zero_ok else 'positive'} and finite once rounded "
                    f"to float32, the precision the model trains in "
                    f"({float32_range_text(zero_ok)}). Got {value!r}, which is {single!r} "
                    f"in float32.")
        ok, single = float32_rate(self.label_smoothing)
        if not ok:  # 1 - 1e-9 is 1.0 in float32: uniform targets, nothing to learn
            raise InvalidParameterError(
                f"The 'label_smoothing' parameter of {type(self).__name__} must be below 1 "
                f"once rounded to float32, the precision the model trains in (at most "
                f"{FLOAT32_BELOW_ONE:.8g}). Got {self.label_smoothing!r}, which is {single!r} "
                f"in float32.")

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, Integral):
            sizes = [sizes]
        sizes = list(sizes) if isinstance(sizes, Iterable) else [sizes]
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and 0 < s < 2**31
                   for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must contain positive integers, got "
                f"{self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _validate_X_y(self, X, y, reset, scaled):
        """X as rows (n, d): float32, or in its own dtype when the core scales it."""
        X, _ = _flatten_images(X)
        X, y = validate_data(self, X, y, reset=reset, order="C", ensure_min_samples=1,
                             dtype="numeric" if scaled else np.float32)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"MLPImageClassifier supports binary and multiclass targets, got {kind}")
        return X, y

    def _check_image_shape(self, shape, name):
        """ValueError when images of this shape are not those the model was fitted on:
        flattened in C order, (3, 8, 8) images and (8, 8, 3) ones of the same size give
        rows whose pixels are in another order, and would be classified as garbage. Rows
        (shape None) are taken as the user flattened them; a model fitted on rows, or
        read from a file or pickle older than ``image_shape_in_``, takes any images of
        its width."""
        fitted = getattr(self, "image_shape_in_", None)
        if shape is None or fitted is None or tuple(shape) == tuple(fitted):
            return
        raise ValueError(
            f"{name} holds images of shape {tuple(shape)}, but {type(self).__name__} was "
            f"fitted on images of shape {tuple(fitted)} (image_shape_in_): flattened, "
            f"their pixels would be in another order. Pass images of shape "
            f"{tuple(fitted)}, or rows of {math.prod(fitted)} values flattened as those "
            f"images are.")

    def _n_threads(self):
        # Results do not depend on it; the core clamps larger teams to MAX_THREADS.
        return 0 if self.n_threads is None else min(int(self.n_threads), _core.MAX_THREADS)

    def _activation_code(self):
        return ACTIVATIONS[self.activation]

    def _init_params(self, sizes, rng):
        """Weights and biases of every layer, drawn from ``rng`` as float32."""
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            if self.weight_init == "pytorch":
                bound = 1.0 / np.sqrt(fan_in)
            else:
                factor = 2.0 if self.activation == "logistic" else 6.0
                bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(cache_aligned(rng.uniform(-bound, bound, (fan_in, fan_out))))
            intercepts.append(cache_aligned(rng.uniform(-bound, bound, fan_out)))
        return coefs, intercepts

    # ----------------------------------------------------------------------------------
    # Training: _fit and its steps
    # ----------------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, *, incremental, classes, callback, validation):
        """Train, or on any error leave every fitted attribute as it was before the call
        (a failed refit must not mix the new data's n_features_in_ with the old weights,
        nor a diverging run keep the epochs a callback saw committed)."""
        kept = set(self._get_param_names()) | TRANSIENT_ATTRIBUTES
        before = {k: v for k, v in self.__dict__.items() if k not in kept}
        try:
            return self._fit_steps(X, y, sample_weight, incremental, classes, callback,
                                   validation)
        except BaseException:
            for k in [k for k in self.__dict__ if k not in kept]:
                del self.__dict__[k]
            self.__dict__.update(before)
            raise

    def _fit_steps(self, X, y, sample_weight, incremental, classes, callback, given_val):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be a function f(model, info) or None, got "
                            f"{type(callback).__name__}")
        hidden = self._hidden_sizes()
        first_call = not hasattr(self, "coefs_") or (not incremental and not self.warm_start)
        if not first_call:
            self._check_continuable()
        X = _as_images(X)
        image_shape = _image_shape(X)
        if first_call:
            self.image_shape_in_ = image_shape
        else:
            self._check_image_shape(image_shape, "X")
        geometry = image_geometry(X, self.image_shape)
        scaler = self._fitted_scaler(X, incremental and not first_call)
        X, y = self._validate_X_y(X, y, reset=first_call, scaled=scaler is not None)
        classes = self._resolve_classes(y, classes, incremental, first_call)
        data = self._encode(X, y, classes, scaler, sample_weight)
        optimizer = make_optimizer(self)
        run = (self._new_run(data, hidden, classes, optimizer) if first_call
               else self._resume_run(hidden, optimizer, reset_lr=not incremental))
        run.input_scaler = scaler
        options = train_options(self, run, X.shape[1], len(hidden), geometry)
        early_stopping = self.early_stopping and not incremental
        validation = None
        if early_stopping:
            validation = (self._split_validation(data, run) if given_val is None
                          else self._encode_validation(given_val, classes, scaler))
            _start_validation(run.record)
        else:
            _stop_validation(run.record)
        data.batch_size = self._batch_size(data.n)
        optimizer.begin_fit(run.optimizer, -(-data.n // data.batch_size),
                            restart=not incremental or run.optimizer.t == 0)
        tasks = FitTasks(self, X, y, sample_weight, 1 if incremental else self.max_iter,
                         callback)
        self._train_epochs(run, data, validation, optimizer, options, incremental, tasks)
        self._commit(run)
        tasks.fit_ends(lambda: self._fitted_attributes(run))
        self._seal_bf16()
        return self

    def _check_continuable(self):
        """ValueError unless the model holds the fitted state that warm_start and
        partial_fit continue from: weights alone (assigned to coefs_ by hand) are not a
        model fastmlp can go on training."""
        missing = [k for k in _CONTINUED_STATE if k not in vars(self)]
        if missing:
            raise ValueError(
                f"this model has coefs_ but not {', '.join(missing)}: warm_start and "
                f"partial_fit continue a model that fastmlp fitted (or fastmlp.load read); "
                f"fit without warm_start to start over")

    def _resolve_classes(self, y, classes, incremental, first_call):
        """The classes of the problem: y's on a first fit, kept on later ones, as given
        (and checked against the first call's) with partial_fit."""
        if incremental:
            if classes is not None:
                classes = np.unique(np.asarray(classes))
                if hasattr(self, "classes_") and not first_call and not np.array_equal(
                        classes, self.classes_):
                    raise ValueError(
                        f"classes={classes!r} is not the same as on the first call to "
                        f"partial_fit, which was {self.classes_!r}")
            elif first_call:
                raise ValueError("classes must be passed on the first call to partial_fit")
            else:
                classes = self.classes_
        elif first_call:
            classes = np.unique(y)
        else:
            classes = self.classes_
            if not np.array_equal(np.unique(y), classes):
                raise ValueError(
                    f"warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {classes}, `y` has "
                    f"{np.unique(y)}")
        if first_call and len(classes) < 2:
            raise ValueError(
                f"MLPImageClassifier needs samples of at least 2 classes; got {len(classes)} "
                f"class: {classes!r}")
        unseen = np.setdiff1d(np.unique(y), classes)
        if unseen.size:
            raise ValueError(f"y contains labels not in classes_: {unseen!r}")
        return classes

    def _fitted_scaler(self, X, keep):
        """The PixelScaler the core applies to X: None without input_scaler, the fitted
        one when partial_fit continues, else a clone fitted on X."""
        if self.input_scaler is None:
            return None
        if keep and getattr(self, "input_scaler_", None) is not None:
            return self.input_scaler_
        return fit_input_scaler(self.input_scaler, X)

    def _encode(self, X, y, classes, scaler, sample_weight):
        """X as the core reads it, labels as int32 indices into classes, and the sample
        weights times the class weights."""
        given = _sample_weight(sample_weight, X.shape[0])
        weight, name = given, "sample_weight"
        if self.class_weight is not None:
            _check_class_weight(self.class_weight)
            weight = compute_sample_weight(self.class_weight, y)
            weight = weight if given is None else weight * given
            name = "class_weight" if given is None else "sample_weight times class_weight"
        data = TrainingData(pixel_input(X, scaler) if scaler is not None else X,
                            np.searchsorted(classes, y).astype(np.int32),
                            _training_weights(weight, name),
                            rows_per_block=block_rows(X), given_weight=given)
        if self.shuffle == "block":
            data.read_ahead = ReadAhead(X, data.rows_per_block)
        return data

    def _new_run(self, data, hidden, classes, optimizer):
        rng = check_random_state(self.random_state)
        coefs, intercepts = self._init_params([data.X.shape[1], *hidden, len(classes)], rng)
        return Run(classes, coefs, intercepts, optimizer.new_state(coefs, intercepts), rng,
                   FitRecord())

    def _resume_run(self, hidden, optimizer, reset_lr):
        """The fitted model as a new run, on copies: an error leaves the model as it was."""
        fitted = [c.shape[1] for c in self.coefs_[:-1]]
        if fitted != hidden:
            raise ValueError(f"hidden_layer_sizes changed from {fitted} to {hidden}; fit "
                             "without warm_start to start over")
        coefs = [cache_aligned(c) for c in self.coefs_]
        intercepts = [cache_aligned(b) for b in self.intercepts_]
        if optimizer.fits(self._optimizer_state):
            state = self._optimizer_state.copy()
            if reset_lr:
                state.learning_rate = optimizer.learning_rate_init
        else:  # another solver, or other state slots: start its state afresh
            state = optimizer.new_state(coefs, intercepts)
        return Run(self.classes_, coefs, intercepts, state, copy.deepcopy(self._rng),
                   FitRecord.of(self), noise_seed=getattr(self, "_noise_seed", None))

    def _split_validation(self, data, run):
        """Hold out validation_fraction of the rows, stratified; data keeps the rest.
        Returns the held-out ValidationData."""
        n = data.n
        # Stratified as in scikit-learn's MLPClassifier, so too few samples of a class
        # raise its error. A binary problem is stratified on "is classes_[1]" as a column,
        # as MLPClassifier's one-unit target is (the error names the class 'True'), and
        # a multiclass one on the labels as given, so the error names them; both split
        # as the encoded labels would, their classes sorting alike.
        labels = run.classes[data.y]
        stratify = ((labels == run.classes[1])[:, None] if len(run.classes) == 2
                    else labels)
        try:
            idx_train, idx_val = train_test_split(
                np.arange(n), random_state=run.rng, test_size=self.validation_fraction,
                stratify=stratify)
        except ValueError as exc:
            where = ""
            if len(run.classes) == 2 and "Classes with too few members" in str(exc):
                where = f" ('True' stands for classes_[1] = {run.classes[1:].tolist()[0]!r})"
            raise ValueError(
                f"{exc}{where}. early_stopping holds out a stratified "
                f"validation_fraction={self.validation_fraction} of the samples: each "
                "class needs at least 2 samples, and the validation set at least one "
                "sample per class; pass X_val and y_val to fit instead.") from exc
        # Both sides stay rows of X, not copies; the core keys each sample's random draws
        # by its position among the training samples, as if X[idx_train] were given.
        idx_val, idx_train = idx_val.astype(np.int64), idx_train.astype(np.int64)
        given = data.given_weight
        validation = ValidationData(data.X, idx_val, data.y[idx_val],
                                    None if given is None else given[idx_val])
        if validation.sample_weight is not None and not validation.sample_weight.any():
            raise ValueError(
                f"the samples early_stopping held out for validation (validation_fraction="
                f"{self.validation_fraction}) all have sample weight zero; pass X_val, y_val "
                "and sample_weight_val to fit instead")
        data.rows, data.y = idx_train, data.y[idx_train]
        if data.sample_weight is not None:
            data.sample_weight = _training_weights(
                data.sample_weight[idx_train], "those left after early_stopping's "
                "validation split")
        return validation

    def _encode_validation(self, given, classes, scaler):
        """The validation set given to fit, validated like X and encoded like y."""
        X_val, y_val, weight = given
        X_val, shape = _flatten_images(X_val)
        self._check_image_shape(shape, "X_val")
        width = np.shape(X_val)[1:]
        if len(width) == 1 and width[0] != self.n_features_in_:
            raise ValueError(f"X_val has {width[0]} features, but X has "
                             f"{self.n_features_in_}: the validation set takes rows like X's")
        X_val = validate_data(self, X_val, reset=False, order="C", ensure_all_finite=False,
                              dtype="numeric" if scaler is not None else np.float32)
        assert_all_finite(X_val, input_name="X_val")  # validate_data's message says "X"
        y_val = np.asarray(y_val)
        if y_val.ndim != 1 or len(y_val) != X_val.shape[0]:
            raise ValueError(f"y_val must be 1-D with one label per row of X_val "
                             f"({X_val.shape[0]}), got shape {y_val.shape}")
        unseen = np.setdiff1d(np.unique(y_val), classes)
        if unseen.size:
            raise ValueError(f"y_val contains labels not in classes_: {unseen!r}")
        return ValidationData(pixel_input(X_val, scaler) if scaler is not None else X_val,
                              None, np.searchsorted(classes, y_val).astype(np.int32),
                              _sample_weight(weight, X_val.shape[0], "sample_weight_val"))

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(n, max(16, min(128, n // 16)))
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped", UserWarning,
                          stacklevel=user_stacklevel())
            return n
        return int(self.batch_size)

    def _train_epochs(self, run, data, validation, optimizer, options, incremental, tasks):
        """Up to max_iter epochs (one with partial_fit), stopping early when asked; Ctrl-C
        keeps what was trained. Early stopping's best weights are restored at the end."""
        n_epochs = 1 if incremental else self.max_iter
        last_epoch = run.record.n_iter + n_epochs
        best = BestWeights() if validation is not None else None
        sizer = ChunkSizer(data.batch_size)
        stop_reason = None
        try:
            for _ in range(n_epochs):
                tasks.epoch_begins()
                entry = self._run_epoch(run, data, optimizer, options, sizer, last_epoch,
                                        tasks)
                stop_reason = self._end_epoch(run, entry, data.n, validation, best, optimizer)
                if tasks.epoch_ends(entry, lambda: self._commit(run),
                                    lambda: self._fitted_attributes(run, copies=True)):
                    stop_reason = stop_reason or "Stopped by the callback."
                if stop_reason:
                    if self.verbose:
                        print(stop_reason + " Stopping.")
                    break
            else:
                if not incremental:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning,
                        stacklevel=user_stacklevel())
        except KeyboardInterrupt:
            if run.epoch_totals is not None:  # the samples the interrupted epoch trained
                run.record.t += run.epoch_totals.n_samples
            clear_line()
            warnings.warn("Training interrupted by user.", TrainingInterruptedWarning,
                          stacklevel=user_stacklevel())
        if best is not None:
            best.restore(run)

    def _run_epoch(self, run, data, optimizer, options, sizer, last_epoch, tasks):
        """One pass over the data in chunks of batches; returns the epoch's history entry.
        Raises TrainingDivergedError (the model untouched) when the loss or the weights
        stop being finite."""
        epoch_start = time.perf_counter()
        epoch = run.record.n_iter + 1
        n = data.n
        order = epoch_order(run.rng, n, self.shuffle, data.rows_per_block)
        if data.read_ahead is not None:
            data.read_ahead.new_epoch()
        totals = run.epoch_totals = EpochTotals()
        bar = _progress.epoch_progress(epoch, last_epoch, n) if self.verbose else None
        done = 0
        try:
            while done < n:
                stop = min(n, done + sizer.samples)
                if data.read_ahead is not None:  # this chunk's blocks, and the next one's
                    data.read_ahead.advise(data.x_rows(order[done:stop + sizer.samples]))
                sizer.start()
                res = self._train_chunk(run, data, order[done:stop], optimizer, options,
                                        totals)
                if not res.finite:
                    self._diverged(f"the loss became infinite or NaN after "
                                   f"{run.record.n_iter} epochs and {done + res.n_samples} "
                                   f"samples", data.batch_size)
                done = stop
                sizer.done(res.n_samples)
                if bar is not None:
                    bar.update(done, totals.loss, totals.accuracy,
                               time.perf_counter() - epoch_start)
                tasks.progress({"epoch": epoch, "samples_done": done, "n_samples": n,
                                "loss": totals.loss, "accuracy": totals.accuracy})
        finally:
            if bar is not None:
                bar.close()
        if not run.finite():
            self._diverged("the weights are no longer finite", data.batch_size)
        return {"epoch": epoch, "loss": totals.epoch_loss(), "accuracy": float(totals.accuracy),
                "learning_rate": optimizer.current_rate(run.optimizer),
                "time": time.perf_counter() - epoch_start}

    def _diverged(self, what, batch_size):
        step = penalty_overshoot(self.alpha, self.learning_rate_init, batch_size)
        penalty = ""
        if self.solver == "sgd" and step is not None:
            penalty = (f" Lower alpha, the L2 penalty (now {self.alpha}): each step takes "
                       f"learning_rate_init * alpha / batch_size = {step:.3g} times the "
                       f"weights off them, which overshoots zero from 1 on.")
        raise TrainingDivergedError(
            f"Training diverged: {what}. Scale the inputs (e.g. fastmlp.PixelScaler) or "
            f"lower learning_rate_init (now {self.learning_rate_init}).{penalty}")

    def _end_epoch(self, run, entry, n_samples, validation, best, optimizer):
        """Record the epoch, judge improvement, step the schedule; the stop reason or None."""
        record = run.record
        run.epoch_totals, record.t = None, record.t + n_samples
        record.n_iter += 1
        record.loss_curve.append(entry["loss"])
        if validation is not None:
            val_loss, val_acc = self._evaluate(run.coefs, run.intercepts, validation)
            record.validation_scores.append(val_acc)
            record.validation_loss_curve.append(val_loss)
            entry.update(val_loss=val_loss, val_accuracy=val_acc)
            metric = val_acc if self.early_stopping_metric == "accuracy" else -val_loss
            improved = best.improved(metric, self.tol)
            best.offer(metric, run.coefs, run.intercepts)
            record.best_validation_score = max(val_acc, record.best_validation_score or -np.inf)
        else:
            best_loss = np.inf if record.best_loss is None else record.best_loss
            improved = entry["loss"] <= best_loss - self.tol
            record.best_loss = min(best_loss, entry["loss"])
        record.no_improvement_count = 0 if improved else record.no_improvement_count + 1
        record.history.append(entry)
        clear_line()
        if self.verbose:
            self._print_epoch(entry, validation is not None)
        optimizer.iteration_ends(run.optimizer, record.t)
        if record.no_improvement_count <= self.n_iter_no_change:
            return None
        if not optimizer.trigger_stopping(run.optimizer, self.verbose):
            record.no_improvement_count = 0
            return None
        what = "Validation score" if validation is not None else "Training loss"
        return (f"{what} did not improve more than tol={self.tol} for "
                f"{self.n_iter_no_change} consecutive epochs.")

    @staticmethod
    def _print_epoch(entry, with_validation):
        line = f"Iteration {entry['epoch']}, loss = {entry['loss']:.8f}"
        if with_validation:
            line += f", validation accuracy = {entry['val_accuracy']:.6f}"
        print(line + f" ({entry['time']:.2f}s)")

    def _seal_bf16(self):
        """A bfloat16 model's copy of its weights for prediction, made once per fitted
        model, and its coefs_ made read-only so that the copy cannot go stale. Nothing
        for a float32 model (or where bfloat16 falls back to float32)."""
        self.__dict__.pop("_bf16_weights", None)
        if not hasattr(self, "coefs_") or core_precision(self.precision, warn=False) != "bfloat16":
            return
        for c in self.coefs_:
            c.flags.writeable = False
        self._bf16_weights = (list(self.coefs_), _core.Bf16Weights(self.coefs_, self.intercepts_))

    def _prediction_weights(self, coefs, intercepts):
        """The core's bfloat16 weights for predicting with these arrays, or None in
        float32: the sealed copy while coefs_ holds the arrays it was made from, else a
        copy for this call (new arrays assigned to coefs_, or weights still training)."""
        if core_precision(self.precision, warn=False) != "bfloat16":
            return None
        sealed = self.__dict__.get("_bf16_weights")
        if sealed is not None and len(sealed[0]) == len(coefs) and all(
                a is b for a, b in zip(sealed[0], coefs)):
            return sealed[1]
        return _core.Bf16Weights(coefs, intercepts)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_bf16_weights", None)  # remade from coefs_ on unpickling
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_bf16_weights" not in state:
            self._seal_bf16()

    def _commit(self, run):
        """The run's parameters, state and record become the fitted model; returns the
        attributes set."""
        attributes = self._fitted_attributes(run)
        for name, value in attributes.items():
            setattr(self, name, value)
        return attributes

    def _fitted_attributes(self, run, copies=False):
        """The fitted model's attributes as of the run's state: its own arrays, or with
        copies=True copies of them (for a snapshot while training goes on)."""
        record = run.record
        arrays = copy.deepcopy if copies else (lambda v: v)
        return {
            "classes_": run.classes, "coefs_": arrays(run.coefs),
            "intercepts_": arrays(run.intercepts), "_optimizer_state": arrays(run.optimizer),
            "_rng": run.rng, "_noise_seed": run.noise_seed, "n_iter_": record.n_iter,
            "t_": record.t, "loss_curve_": arrays(record.loss_curve),
            "loss_": record.loss_curve[-1] if record.loss_curve else None,
            "history_": arrays(record.history), "best_loss_": record.best_loss,
            "_no_improvement_count": record.no_improvement_count,
            "validation_scores_": arrays(record.validation_scores),
            "validation_loss_curve_": arrays(record.validation_loss_curve),
            "best_validation_score_": record.best_validation_score,
            "n_layers_": len(run.coefs) + 1, "n_outputs_": len(run.classes),
            "out_activation_": "softmax", "input_scaler_": run.input_scaler,
            "n_features_in_": self.n_features_in_,
            "image_shape_in_": getattr(self, "image_shape_in_", None),
        }

    def _train_chunk(self, run, data, order, optimizer, options, totals):
        """Train on the batches of ``order`` in one call into the core (GIL released).
        Parameters, optimizer state, its step count and ``totals`` are updated in place."""
        state = run.optimizer
        return _core.train_batches(
            coefs=run.coefs, intercepts=run.intercepts, state=state.slots, X=data.X,
            sample_rows=data.rows, y=data.y, sample_weight=data.sample_weight, order=order,
            batch_size=data.batch_size, activation=self._activation_code(),
            optimizer=optimizer.config(state), options=options, steps=state.steps,
            totals=totals.values, n_threads=self._n_threads())

    def _evaluate(self, coefs, intercepts, validation):
        """(mean log-loss, accuracy) of the given parameters on held-out rows."""
        logp = _core.predict_proba(coefs, intercepts, validation.X, rows=validation.rows,
                                   activation=self._activation_code(), log=True,
                                   n_threads=self._n_threads(),
                                   bf16=self._prediction_weights(coefs, intercepts),
                                   check_outputs=False)
        y, w = validation.y, validation.sample_weight
        picked = logp[np.arange(len(y)), y].astype(np.float64)
        right = np.argmax(logp, axis=1) == y
        if w is None:
            return float(-np.mean(picked)), float(np.mean(right))
        return float(-np.average(picked, weights=w)), float(np.average(right, weights=w))

    def _prediction_input(self, X):
        """X validated for prediction, as a 2-D array. A NumPy array of the fitted width
        and a dtype the core reads (float32, float64, uint8), given to a model fitted
        without feature names, is used as it is: scikit-learn's validation, which cannot
        fail or convert such an array, was three quarters of a one-image call. NaN and
        infinity are caught by the core as it reads each block (a scan of X here cost a
        sixth of a call on 10000 images)."""
        fitted = vars(self)
        if (type(X) is np.ndarray and X.dtype in _PLAIN_DTYPES and X.ndim == 2
                and X.shape[0] > 0 and "coefs_" in fitted and "n_features_in_" in fitted
                and X.shape[1] == fitted["n_features_in_"]
                and "feature_names_in_" not in fitted):
            return X
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype="numeric", ensure_all_finite=False)

    def _forward(self, X, log):
        """(Log-)probabilities, float32 (n, n_classes). Rows reach the core one block at a
        time (converted to float32 there, unless the core scales them itself), so images
        of any count and dtype need only a block's extra memory; each row's result does
        not depend on the block it is in."""
        X, shape = _flatten_images(X)
        self._check_image_shape(shape, "X")
        X = self._prediction_input(X)
        scaler = getattr(self, "input_scaler_", None)
        if scaler is None and X.dtype.itemsize > 4 and X.dtype.kind == "f" and X.size:
            biggest = max(abs(float(X.max())), abs(float(X.min())))
            if np.isinf(biggest):
                raise ValueError("Input X contains infinity.")
            if biggest > _FLOAT32_MAX:
                raise ValueError("Input X contains a value too large for dtype('float32'), "
                                 "the precision the model computes in; scale the inputs as "
                                 "for fit.")
        if self.coefs_[-1].shape[1] != len(self.classes_):
            raise ValueError(f"the model's last layer has {self.coefs_[-1].shape[1]} units "
                             f"for its {len(self.classes_)} classes_")
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.float32)
        bf16 = self._prediction_weights(self.coefs_, self.intercepts_)
        for start in range(0, X.shape[0], _PREDICT_BLOCK_ROWS):
            block = X[start:start + _PREDICT_BLOCK_ROWS]
            block = (pixel_input(block, scaler) if scaler is not None
                     else np.ascontiguousarray(block, dtype=np.float32))
            # The core raises ValueError on an output that is not finite (the model's
            # logits overflow float32), checked as it writes each block.
            _core.predict_proba(
                self.coefs_, self.intercepts_, block, activation=self._activation_code(),
                log=log, n_threads=self._n_threads(), bf16=bf16,
                out=out[start:start + _PREDICT_BLOCK_ROWS])
        return out
