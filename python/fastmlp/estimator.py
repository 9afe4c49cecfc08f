"""MLPImageClassifier: a multilayer perceptron whose training loop runs in C++.

The estimator keeps every parameter and optimizer state as NumPy float32 arrays, so
``clone``, pickle, joblib and ``warm_start`` behave as for any scikit-learn estimator; the
compiled core reads and updates them in place, one chunk of batches per call, with the GIL
released. Randomness (initialization, shuffling, the validation split) is drawn here from
``random_state``; the core is deterministic given its inputs, so a fixed ``random_state``
gives bitwise-identical weights with any number of threads.
"""

from __future__ import annotations

import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, compute_sample_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._progress import clear_line, draw_bar, stderr_is_terminal
from .exceptions import TrainingDivergedError, TrainingInterruptedWarning
from .kernels import ACTIVATIONS

__all__ = ["MLPImageClassifier", "TrainingDivergedError"]


_SOLVERS = {"sgd": 0, "adam": 1}

# Samples per call into the core before the first timing is known; later chunks are sized
# to take about _CHUNK_SECONDS so Ctrl-C and progress reports stay responsive.
_FIRST_CHUNK_SAMPLES = 4096
_CHUNK_SECONDS = 0.25
# Rows per call into the core at prediction (float32 copies of at most this many rows).
_PREDICT_BLOCK_ROWS = 32768


def _cache_aligned(a):
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


def _flatten_images(X):
    """Images (n, H, W), (n, H, W, C) or (n, C, H, W) as rows (n, H*W*C); else X as given."""
    if hasattr(X, "__array__") and not hasattr(X, "columns"):
        arr = np.asarray(X)
        if arr.ndim > 2:
            return arr.reshape(arr.shape[0], -1)
    return X


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


class MLPImageClassifier(ClassifierMixin, BaseEstimator):
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
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the SGD step size (Adam always uses ``learning_rate_init``).
        "invscaling": ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch;
        "adaptive": divide by 5 whenever ``n_iter_no_change`` epochs did not improve.
    learning_rate_init : float, default=1e-3
        Initial step size.
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default=20
        Epochs per call to ``fit``.
    shuffle : bool, default=True
        Whether to shuffle the samples at every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, shuffling and the validation split.
    tol : float, default=1e-4
        Improvement below which an epoch counts as not improving.
    verbose : bool, default=False
        Print one line per epoch to stdout, and on a terminal a progress bar over the
        epoch's batches to stderr.
    warm_start : bool, default=False
        Continue from the previous fit's weights and optimizer state (Adam's moments
        and the SGD velocity are kept).
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with SGD.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified), stop when the
        validation metric has not improved for ``n_iter_no_change`` epochs, and restore the
        best weights.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping`` is on.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float, default=1e-8
        Adam's denominator offset.
    n_iter_no_change : int, default=10
        Epochs without improvement of more than ``tol`` before stopping.
    early_stopping_metric : {"accuracy", "loss"}, default="accuracy"
        What early stopping watches on the validation set.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn's linear classifiers.
    weight_init : {"glorot", "pytorch"}, default="glorot"
        "glorot": uniform in ``±sqrt(6 / (fan_in + fan_out))`` (``±sqrt(2 / ...)`` for
        logistic) for weights and biases; "pytorch": uniform in ``±1/sqrt(fan_in)``.
    n_threads : int or None, default=None
        Threads of the core; None follows OpenMP's setting, which ``OMP_NUM_THREADS`` and
        ``threadpoolctl.threadpool_limits`` control. Results do not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X had string column names.
    coefs_ : list of ndarray of float32, coefs_[i] of shape (fan_in, fan_out)
    intercepts_ : list of ndarray of float32, intercepts_[i] of shape (fan_out,)
    loss_curve_ : list of float
        Training loss of each epoch (mean over its batches as trained, with the penalty).
    validation_scores_ : list of float or None
        Validation accuracy per epoch when ``early_stopping``.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch when ``early_stopping``.
    best_validation_score_ : float or None
    best_loss_ : float or None
        Lowest training loss (None with early stopping).
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``accuracy`` (training, averaged over the epoch's
        batches), ``learning_rate``, ``time`` (seconds), and with early stopping
        ``val_loss`` and ``val_accuracy``.
    n_iter_ : int
        Epochs trained.
    t_ : int
        Training samples seen.
    n_layers_ : int
        Layers including input and output.
    n_outputs_ : int
        Output units (the number of classes; 2 for binary problems).
    out_activation_ : str
        "softmax".

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
        "solver": [StrOptions(set(_SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
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
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping_metric": [StrOptions({"accuracy", "loss"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "weight_init": [StrOptions({"glorot", "pytorch"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256,),
        activation="relu",
        *,
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=1e-3,
        power_t=0.5,
        max_iter=20,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        early_stopping_metric="accuracy",
        class_weight=None,
        weight_init="glorot",
        n_threads=None,
    ):
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

    # ----------------------------------------------------------------------------------
    # Public API
    # ----------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, callback=None):
        """Train for ``max_iter`` epochs (fewer if training stops early).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images (n, H, W),
            (n, H, W, C), (n, C, H, W)
            Any real dtype; scale pixels first (see :class:`fastmlp.PixelScaler`).
        y : array-like of shape (n_samples,)
            Class labels of any type.
        callback : callable, optional
            Called as ``callback(estimator, info)`` after every chunk of batches
            (``info["event"] == "progress"``, with ``epoch``, ``samples_done``,
            ``n_samples``) and after every epoch (``"epoch"``, with the epoch's
            ``history_`` entry). ``estimator.coefs_`` is current during the epoch call.
            Returning True stops training after the current epoch.

        Returns
        -------
        self : MLPImageClassifier
        """
        return self._fit(X, y, incremental=False, classes=None, callback=callback)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes of the problem; required on the first call.

        Returns
        -------
        self : MLPImageClassifier
        """
        return self._fit(X, y, incremental=True, classes=classes, callback=None)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), float64 rows summing to 1."""
        proba = self._forward(X, log=False).astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X):
        """Log of ``predict_proba``, computed stably from the logits."""
        return self._forward(X, log=True).astype(np.float64)

    def predict(self, X):
        """Most probable class of each sample."""
        logp = self._forward(X, log=True)
        return self.classes_[np.argmax(logp, axis=1)]

    def summary(self, n_features=None, n_classes=None):
        """Per-layer table: layer, output shape, parameter count, totals.

        Fitted estimators describe themselves; before fitting pass ``n_features`` and
        ``n_classes``.

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
        act_name = {"relu": "ReLU", "logistic": "Sigmoid", "tanh": "Tanh", "identity": None}
        for i in range(len(sizes) - 1):
            rows.append((f"Linear({sizes[i]}, {sizes[i + 1]})", (None, sizes[i + 1]),
                         sizes[i] * sizes[i + 1] + sizes[i + 1]))
            if i + 2 < len(sizes) and act_name[self.activation]:
                rows.append((act_name[self.activation], (None, sizes[i + 1]), 0))
        return ModelSummary(rows)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags

    # ----------------------------------------------------------------------------------
    # Validation and state
    # ----------------------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        sizes = list(sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0
                   for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must contain positive integers, got "
                f"{self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _validate_X_y(self, X, y, reset):
        X = _flatten_images(X)
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, order="C",
                             ensure_min_samples=1)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"MLPImageClassifier supports binary and multiclass targets, got {kind}")
        return X, y

    def _n_threads(self):
        return 0 if self.n_threads is None else int(self.n_threads)

    def _init_params(self, sizes, rng):
        """Weights and biases of every layer, drawn from ``rng`` as float32."""
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            if self.weight_init == "pytorch":
                bound = 1.0 / np.sqrt(fan_in)
            else:
                factor = 2.0 if self.activation == "logistic" else 6.0
                bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(_cache_aligned(rng.uniform(-bound, bound, (fan_in, fan_out))))
            intercepts.append(_cache_aligned(rng.uniform(-bound, bound, fan_out)))
        return coefs, intercepts

    def _new_optimizer_state(self, coefs, intercepts):
        zeros = lambda arrs: [_cache_aligned(np.zeros_like(a)) for a in arrs]  # noqa: E731
        state = {"solver": self.solver, "t": 0, "learning_rate": float(self.learning_rate_init),
                 "s1_coefs": None, "s1_intercepts": None, "s2_coefs": None, "s2_intercepts": None}
        if self.solver == "adam" or self.momentum != 0:
            state["s1_coefs"], state["s1_intercepts"] = zeros(coefs), zeros(intercepts)
        if self.solver == "adam":
            state["s2_coefs"], state["s2_intercepts"] = zeros(coefs), zeros(intercepts)
        return state

    def _state_matches(self, state):
        """Whether kept optimizer state fits the current solver settings."""
        if state is None or state["solver"] != self.solver:
            return False
        need_s1 = self.solver == "adam" or self.momentum != 0
        return (state["s1_coefs"] is not None) == need_s1

    # ----------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------

    def _fit(self, X, y, incremental, classes, callback):
        hidden = self._hidden_sizes()
        first_call = not hasattr(self, "coefs_") or (not incremental and not self.warm_start)
        X, y = self._validate_X_y(X, y, reset=first_call)

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
        else:
            classes = np.unique(y) if first_call else self.classes_
        if first_call and len(classes) < 2:
            raise ValueError(
                f"MLPImageClassifier needs samples of at least 2 classes; got {len(classes)} "
                f"class: {classes!r}")
        unseen = np.setdiff1d(np.unique(y), classes)
        if unseen.size:
            raise ValueError(f"y contains labels not in classes_: {unseen!r}")
        y_enc = np.searchsorted(classes, y).astype(np.int32)
        sample_weight = None
        if self.class_weight is not None:
            sample_weight = compute_sample_weight(self.class_weight, y).astype(np.float32)

        if first_call:
            rng = check_random_state(self.random_state)
            sizes = [X.shape[1], *hidden, len(classes)]
            coefs, intercepts = self._init_params(sizes, rng)
            state = self._new_optimizer_state(coefs, intercepts)
            record = {"loss_curve_": [], "history_": [], "n_iter_": 0, "t_": 0,
                      "best_loss_": np.inf, "_no_improvement_count": 0,
                      "validation_scores_": None, "validation_loss_curve_": None,
                      "best_validation_score_": None}
        else:
            rng = self._rng
            if [c.shape[1] for c in self.coefs_[:-1]] != hidden:
                raise ValueError(
                    f"hidden_layer_sizes changed from {[c.shape[1] for c in self.coefs_[:-1]]} "
                    f"to {hidden}; fit without warm_start to start over")
            # Work on copies: an error leaves the fitted model as it was.
            coefs = [_cache_aligned(c) for c in self.coefs_]
            intercepts = [_cache_aligned(b) for b in self.intercepts_]
            state = self._optimizer_state
            if self._state_matches(state):
                state = {k: ([_cache_aligned(a) for a in v] if isinstance(v, list) else v)
                         for k, v in state.items()}
            else:
                state = self._new_optimizer_state(coefs, intercepts)
            if not incremental:
                state["learning_rate"] = float(self.learning_rate_init)
            record = {k: getattr(self, k) for k in (
                "n_iter_", "t_", "best_loss_", "_no_improvement_count",
                "best_validation_score_")}
            record["loss_curve_"] = list(self.loss_curve_)
            record["history_"] = list(self.history_)
            for k in ("validation_scores_", "validation_loss_curve_"):
                v = getattr(self, k)
                record[k] = None if v is None else list(v)

        early_stopping = self.early_stopping and not incremental
        X_val = y_val = None
        if early_stopping:
            # Stratify when every class can appear on both sides of the split.
            n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
            counts = np.bincount(y_enc)
            counts = counts[counts > 0]
            can_stratify = counts.min() >= 2 and len(counts) <= min(n_val, X.shape[0] - n_val)
            stratify = y_enc if can_stratify else None
            idx_train, idx_val = train_test_split(
                np.arange(X.shape[0]), random_state=rng, test_size=self.validation_fraction,
                stratify=stratify)
            if idx_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_val, y_val = X[idx_val], y_enc[idx_val]
            X = np.ascontiguousarray(X[idx_train])
            y_enc = y_enc[idx_train]
            if sample_weight is not None:
                sample_weight = sample_weight[idx_train]
            if record["validation_scores_"] is None:
                record["validation_scores_"], record["validation_loss_curve_"] = [], []
            record["best_loss_"] = None
            best = {"metric": None, "coefs": None, "intercepts": None}

        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(n, max(16, min(128, n // 16)))
        else:
            batch_size = int(self.batch_size)
        if batch_size > n:
            if self.batch_size != "auto":
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", UserWarning, stacklevel=3)
            batch_size = n

        # Commit the model as it is (used on success and on Ctrl-C).
        def commit():
            self.classes_ = classes
            self.coefs_, self.intercepts_ = coefs, intercepts
            self._optimizer_state = state
            self._rng = rng
            for k, v in record.items():
                setattr(self, k, v)
            self.n_layers_ = len(coefs) + 1
            self.n_outputs_ = len(classes)
            self.out_activation_ = "softmax"

        n_epochs = 1 if incremental else self.max_iter
        progress_bar = bool(self.verbose) and stderr_is_terminal()
        last_epoch = record["n_iter_"] + n_epochs
        chunk_samples = max(batch_size, _FIRST_CHUNK_SAMPLES // batch_size * batch_size)
        stop_reason = None
        try:
            for _ in range(n_epochs):
                epoch_start = time.perf_counter()
                order = rng.permutation(n) if self.shuffle else np.arange(n)
                order = order.astype(np.int64, copy=False)
                totals = np.zeros(4)  # loss_sum, weight_sum, n_correct, n_samples
                done = 0
                while done < n:
                    stop = min(n, done + chunk_samples)
                    t0 = time.perf_counter()
                    res = self._train_chunk(coefs, intercepts, state, X, y_enc, sample_weight,
                                            order[done:stop], batch_size)
                    if not res["finite"]:
                        raise TrainingDivergedError(
                            "Training diverged: the loss became infinite or NaN after "
                            f"{record['n_iter_']} epochs and {done + res['n_samples']} samples. "
                            "Scale the inputs (e.g. fastmlp.PixelScaler) or lower "
                            f"learning_rate_init (now {self.learning_rate_init}).")
                    totals += (res["loss_sum"], res["weight_sum"], res["n_correct"],
                               res["n_samples"])
                    done = stop
                    per_sample = (time.perf_counter() - t0) / max(1, res["n_samples"])
                    chunk_samples = max(batch_size, int(_CHUNK_SECONDS / max(per_sample, 1e-9))
                                        // batch_size * batch_size)
                    if progress_bar:
                        draw_bar(record["n_iter_"] + 1, last_epoch, done, n,
                                 totals[0] / max(totals[1], 1e-300),
                                 totals[2] / max(totals[3], 1),
                                 time.perf_counter() - epoch_start)
                    if callback is not None:
                        callback(self, {"event": "progress", "epoch": record["n_iter_"] + 1,
                                        "samples_done": done, "n_samples": n,
                                        "loss": totals[0] / max(totals[1], 1e-300),
                                        "accuracy": totals[2] / max(totals[3], 1)})
                if not all(np.isfinite(c).all() for c in coefs):
                    raise TrainingDivergedError(
                        "Training diverged: the weights are no longer finite. Scale the "
                        "inputs (e.g. fastmlp.PixelScaler) or lower learning_rate_init "
                        f"(now {self.learning_rate_init}).")

                record["n_iter_"] += 1
                record["t_"] += n
                loss = float(totals[0] / totals[1]) if totals[1] > 0 else 0.0
                record["loss_curve_"].append(loss)
                entry = {"epoch": record["n_iter_"], "loss": loss,
                         "accuracy": float(totals[2] / max(totals[3], 1)),
                         "learning_rate": state["learning_rate"],
                         "time": time.perf_counter() - epoch_start}
                if early_stopping:
                    val_loss, val_acc = self._evaluate(coefs, intercepts, X_val, y_val)
                    record["validation_scores_"].append(val_acc)
                    record["validation_loss_curve_"].append(val_loss)
                    entry.update(val_loss=val_loss, val_accuracy=val_acc)
                    metric = val_acc if self.early_stopping_metric == "accuracy" else -val_loss
                    improved = best["metric"] is None or metric >= best["metric"] + self.tol
                    if best["metric"] is None or metric > best["metric"]:
                        best.update(metric=metric, coefs=[c.copy() for c in coefs],
                                    intercepts=[b.copy() for b in intercepts])
                    record["best_validation_score_"] = max(
                        val_acc, record["best_validation_score_"] or -np.inf)
                else:
                    best_loss = np.inf if record["best_loss_"] is None else record["best_loss_"]
                    improved = loss <= best_loss - self.tol
                    record["best_loss_"] = min(best_loss, loss)
                record["_no_improvement_count"] = (
                    0 if improved else record["_no_improvement_count"] + 1)
                record["history_"].append(entry)
                clear_line()
                if self.verbose:
                    line = f"Iteration {entry['epoch']}, loss = {loss:.8f}"
                    if early_stopping:
                        line += f", validation accuracy = {entry['val_accuracy']:.6f}"
                    print(line + f" ({entry['time']:.2f}s)")

                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    state["learning_rate"] = (self.learning_rate_init
                                              / (record["t_"] + 1) ** self.power_t)
                if record["_no_improvement_count"] > self.n_iter_no_change:
                    if self.solver == "sgd" and self.learning_rate == "adaptive" and \
                            state["learning_rate"] > 1e-6:
                        state["learning_rate"] /= 5.0
                        record["_no_improvement_count"] = 0
                        if self.verbose:
                            print(f"Setting learning rate to {state['learning_rate']:f}")
                    else:
                        what = ("Validation score" if early_stopping else "Training loss")
                        stop_reason = (f"{what} did not improve more than tol={self.tol} for "
                                       f"{self.n_iter_no_change} consecutive epochs.")
                if callback is not None:
                    commit()
                    if callback(self, {"event": "epoch", **entry}):
                        stop_reason = stop_reason or "Stopped by the callback."
                if stop_reason:
                    if self.verbose:
                        print(stop_reason + " Stopping.")
                    break
            else:
                if not incremental and self.max_iter > 0 and stop_reason is None:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning,
                        stacklevel=3)
        except KeyboardInterrupt:
            clear_line()
            warnings.warn("Training interrupted by user.", TrainingInterruptedWarning,
                          stacklevel=3)
        if early_stopping and best["coefs"] is not None:
            coefs[:], intercepts[:] = best["coefs"], best["intercepts"]
        commit()
        return self

    def _train_chunk(self, coefs, intercepts, state, X, y_enc, sample_weight, order,
                     batch_size):
        """Train on the batches of ``order`` in one call into the core (GIL released).

        Parameters and optimizer state are updated in place; returns the core's totals
        (loss_sum, weight_sum, n_correct, n_samples, n_batches, t, finite).
        """
        res = _core.train_batches(
            coefs, intercepts, state["s1_coefs"], state["s1_intercepts"], state["s2_coefs"],
            state["s2_intercepts"], X, y_enc, sample_weight, order, batch_size,
            ACTIVATIONS[self.activation], _SOLVERS[self.solver], state["learning_rate"],
            float(self.momentum), bool(self.nesterovs_momentum), float(self.alpha),
            float(self.beta_1), float(self.beta_2), float(self.epsilon), int(state["t"]),
            self._n_threads())
        state["t"] = res["t"]
        return res

    def _evaluate(self, coefs, intercepts, X, y_enc):
        """(mean log-loss, accuracy) of the given parameters on encoded labels."""
        logp = _core.predict_proba(coefs, intercepts, X, ACTIVATIONS[self.activation], True,
                                   self._n_threads())
        loss = float(-np.mean(logp[np.arange(len(y_enc)), y_enc], dtype=np.float64))
        acc = float(np.mean(np.argmax(logp, axis=1) == y_enc))
        return loss, acc

    def _forward(self, X, log):
        """(Log-)probabilities, float32 (n, n_classes). Rows are converted to float32 one
        block at a time, so uint8 images of any count need only a block's extra memory;
        each row's result does not depend on the block it is in."""
        check_is_fitted(self)
        X = validate_data(self, _flatten_images(X), reset=False, dtype="numeric")
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.float32)
        for start in range(0, X.shape[0], _PREDICT_BLOCK_ROWS):
            block = np.ascontiguousarray(X[start:start + _PREDICT_BLOCK_ROWS],
                                         dtype=np.float32)
            out[start:start + block.shape[0]] = _core.predict_proba(
                self.coefs_, self.intercepts_, block, ACTIVATIONS[self.activation], log,
                self._n_threads())
        return out
