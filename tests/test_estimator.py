"""MLPImageClassifier: the math against float64 references, and scikit-learn workflows."""

import pickle
import threading
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from fastmlp import MLPImageClassifier, TrainingDivergedError

ACTIVATIONS = ["relu", "logistic", "tanh", "identity"]

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------------------------
# A float64 NumPy reference of the network, written out plainly.
# --------------------------------------------------------------------------------------

def _act(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "logistic":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    return z


def _act_grad(name, y):
    """f'(z) from y = f(z)."""
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "logistic":
        return y * (1 - y)
    if name == "tanh":
        return 1 - y**2
    return np.ones_like(y)


def ref_loss_and_grads(coefs, intercepts, X, y, activation, alpha=0.0):
    """Mean cross-entropy + 0.5*alpha*|W|^2/n and its gradients, all float64."""
    W = [c.astype(np.float64) for c in coefs]
    b = [v.astype(np.float64) for v in intercepts]
    acts = [X.astype(np.float64)]
    for i in range(len(W)):
        z = acts[-1] @ W[i] + b[i]
        acts.append(_act(activation, z) if i + 1 < len(W) else z)
    z = acts[-1]
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    n = X.shape[0]
    loss = np.mean(lse - z[np.arange(n), y]) + 0.5 * alpha * sum((w**2).sum() for w in W) / n
    p = np.exp(z - lse[:, None])
    delta = p.copy()
    delta[np.arange(n), y] -= 1
    delta /= n
    gW, gb = [None] * len(W), [None] * len(W)
    for i in range(len(W) - 1, -1, -1):
        gW[i] = acts[i].T @ delta + alpha * W[i] / n
        gb[i] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ W[i].T) * _act_grad(activation, acts[i])
    return loss, gW, gb


def one_step(clf, X, y, coefs, intercepts):
    """Train ``clf`` for exactly one full batch starting from the given parameters."""
    clf.set_params(warm_start=True, max_iter=1, shuffle=False, batch_size=X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # creates the fitted state with the right shapes ...
        clf.coefs_ = [c.copy() for c in coefs]  # ... which the test then replaces
        clf.intercepts_ = [b.copy() for b in intercepts]
        clf._optimizer_state = None
        clf.loss_curve_ = []
        clf.fit(X, y)
    return clf


def small_problem(rng, n=17, d=6, hidden=(5, 4), classes=3):
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.arange(n) % classes
    sizes = [d, *hidden, classes]
    coefs = [rng.normal(scale=0.5, size=(a, b)).astype(np.float32)
             for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.normal(scale=0.1, size=b).astype(np.float32) for b in sizes[1:]]
    return X, y, coefs, intercepts


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_reference_gradient_matches_finite_differences(rng, activation):
    # The float64 reference is the oracle for the C++ gradient below: check it first.
    X, y, coefs, intercepts = small_problem(rng)
    alpha = 0.3
    _, gW, gb = ref_loss_and_grads(coefs, intercepts, X, y, activation, alpha)
    h = 1e-6
    W = [c.astype(np.float64) for c in coefs]
    b = [v.astype(np.float64) for v in intercepts]
    for layer in range(len(W)):
        for params, grads in ((W, gW), (b, gb)):
            flat = params[layer].reshape(-1)
            for idx in rng.choice(flat.size, size=min(6, flat.size), replace=False):
                old = flat[idx]
                flat[idx] = old + h
                lp = ref_loss_and_grads(W, b, X, y, activation, alpha)[0]
                flat[idx] = old - h
                lm = ref_loss_and_grads(W, b, X, y, activation, alpha)[0]
                flat[idx] = old
                fd = (lp - lm) / (2 * h)
                np.testing.assert_allclose(grads[layer].reshape(-1)[idx], fd, rtol=1e-5,
                                           atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_sgd_step_equals_reference(rng, activation):
    # Plain SGD with lr: W1 = W0 - lr * g, so the step reveals the C++ gradient.
    X, y, coefs, intercepts = small_problem(rng)
    lr, alpha = 0.5, 0.2
    clf = MLPImageClassifier(hidden_layer_sizes=(5, 4), activation=activation, solver="sgd",
                             momentum=0.0, learning_rate_init=lr, alpha=alpha, random_state=0)
    one_step(clf, X, y, coefs, intercepts)
    loss, gW, gb = ref_loss_and_grads(coefs, intercepts, X, y, activation, alpha)
    for i in range(len(coefs)):
        np.testing.assert_allclose(clf.coefs_[i], coefs[i] - lr * gW[i], atol=1e-5, rtol=0)
        np.testing.assert_allclose(clf.intercepts_[i], intercepts[i] - lr * gb[i], atol=1e-5,
                                   rtol=0)
    np.testing.assert_allclose(clf.loss_curve_[-1], loss, rtol=1e-5)


@pytest.mark.parametrize("hidden", [(70,), (33, 40)])
def test_reported_loss_includes_the_l2_term_of_wide_layers(rng, hidden):
    # The core sums |W|^2 by 32-column panels of the first layer (each by the thread that
    # owns it) and layer by layer after it: whole panels, a ragged last panel, and a
    # hidden layer wider than the first.
    X, y, coefs, intercepts = small_problem(rng, n=40, d=9, hidden=hidden)
    alpha = 0.7
    for n_threads in (1, 2):
        clf = MLPImageClassifier(hidden_layer_sizes=hidden, solver="sgd", momentum=0.0,
                                 alpha=alpha, n_threads=n_threads, random_state=0)
        one_step(clf, X, y, coefs, intercepts)
        loss = ref_loss_and_grads(coefs, intercepts, X, y, "relu", alpha)[0]
        np.testing.assert_allclose(clf.loss_curve_[-1], loss, rtol=1e-6)


def test_momentum_and_adam_steps_equal_reference(rng):
    X, y, coefs, intercepts = small_problem(rng)
    _, gW, gb = ref_loss_and_grads(coefs, intercepts, X, y, "relu", 0.0)
    # Nesterov momentum from zero velocity: v = -lr g; W += mu v - lr g.
    lr, mu = 0.1, 0.9
    clf = MLPImageClassifier(hidden_layer_sizes=(5, 4), solver="sgd", momentum=mu,
                             nesterovs_momentum=True, learning_rate_init=lr, alpha=0.0)
    one_step(clf, X, y, coefs, intercepts)
    for i in range(len(coefs)):
        np.testing.assert_allclose(clf.coefs_[i], coefs[i] + mu * (-lr * gW[i]) - lr * gW[i],
                                   atol=1e-5, rtol=0)
    # Adam's first step from zero moments.
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    clf = MLPImageClassifier(hidden_layer_sizes=(5, 4), solver="adam", learning_rate_init=lr,
                             alpha=0.0, beta_1=b1, beta_2=b2, epsilon=eps)
    one_step(clf, X, y, coefs, intercepts)
    lr_t = lr * np.sqrt(1 - b2) / (1 - b1)
    for i in range(len(coefs)):
        m, v = (1 - b1) * gW[i], (1 - b2) * gW[i] ** 2
        np.testing.assert_allclose(clf.coefs_[i], coefs[i] - lr_t * m / (np.sqrt(v) + eps),
                                   atol=1e-5, rtol=0)
        m, v = (1 - b1) * gb[i], (1 - b2) * gb[i] ** 2
        np.testing.assert_allclose(clf.intercepts_[i],
                                   intercepts[i] - lr_t * m / (np.sqrt(v) + eps),
                                   atol=1e-5, rtol=0)
    assert clf._optimizer_state.t == 1


def test_predict_proba_matches_reference(rng):
    X, y, coefs, intercepts = small_problem(rng, n=300)
    clf = MLPImageClassifier(hidden_layer_sizes=(5, 4), activation="tanh", max_iter=1)
    one_step(clf, X, y, coefs, intercepts)
    W = [c.astype(np.float64) for c in clf.coefs_]
    a = X.astype(np.float64)
    for i, w in enumerate(W):
        a = a @ w + clf.intercepts_[i]
        if i + 1 < len(W):
            a = np.tanh(a)
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), p, atol=1e-6)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(p), atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), np.argmax(p, axis=1))


# --------------------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------------------

def test_softmax_regression_on_iris():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = MLPImageClassifier(hidden_layer_sizes=(), learning_rate_init=0.05, max_iter=300,
                             n_iter_no_change=300, batch_size=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.score(X, y) >= 0.97
    assert clf.summary().total_params == 4 * 3 + 3


def test_digits_cross_validation():
    X, y = load_digits(return_X_y=True)
    clf = make_pipeline(StandardScaler(), MLPImageClassifier(max_iter=25, random_state=0))
    # Shuffled folds: the file is ordered by writer, so contiguous folds test writer
    # transfer rather than the classifier.
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(clf, X, y, cv=cv)
    assert scores.mean() >= 0.95, scores


def test_summary_parameter_counts():
    assert MLPImageClassifier((3,)).summary(4, 3).total_params == 27
    assert MLPImageClassifier((3, 2)).summary(4, 3).total_params == 32
    s = MLPImageClassifier((256,)).summary(784, 10)
    assert s.total_params == 203530
    assert [r[2] for r in s.rows] == [0, 200960, 0, 2570]
    assert "203,530" in str(s)
    with pytest.raises(NotFittedError):
        MLPImageClassifier().summary()


# --------------------------------------------------------------------------------------
# Determinism and state
# --------------------------------------------------------------------------------------

def _blobs(n=600, d=20, classes=4, seed=0):
    X, y = make_blobs(n_samples=n, n_features=d, centers=classes, random_state=seed,
                      cluster_std=3.0)
    return StandardScaler().fit_transform(X).astype(np.float32), y


@quiet
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_bitwise_identical_across_threads_and_repeats(solver):
    X, y = _blobs()
    params = dict(hidden_layer_sizes=(33, 17), solver=solver, max_iter=3, batch_size=50,
                  random_state=7, alpha=1e-3)
    fits = [MLPImageClassifier(n_threads=t, **params).fit(X, y) for t in (1, 2, 2, 1)]
    for other in fits[1:]:
        for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, other.coefs_ + other.intercepts_):
            assert np.array_equal(a, b)
        assert fits[0].loss_curve_ == other.loss_curve_
    P = [clf.predict_proba(X) for clf in fits]
    assert all(np.array_equal(P[0], p) for p in P[1:])


@quiet
def test_warm_start_continues_exactly():
    # Two warm fits of 2 epochs == one fit of 4: weights, Adam moments, RNG stream all kept.
    X, y = _blobs()
    params = dict(hidden_layer_sizes=(16,), batch_size=64, random_state=3)
    full = MLPImageClassifier(max_iter=4, **params).fit(X, y)
    warm = MLPImageClassifier(max_iter=2, warm_start=True, **params).fit(X, y).fit(X, y)
    for a, b in zip(full.coefs_, warm.coefs_):
        assert np.array_equal(a, b)
    assert warm.n_iter_ == 4 and warm.t_ == 4 * X.shape[0]
    assert warm.loss_curve_ == full.loss_curve_


def test_partial_fit_equals_fit():
    X, y = _blobs()
    params = dict(hidden_layer_sizes=(16,), batch_size=64, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = MLPImageClassifier(max_iter=3, **params).fit(X, y)
    part = MLPImageClassifier(**params)
    for _ in range(3):
        part.partial_fit(X, y, classes=np.unique(y))
    for a, b in zip(full.coefs_, part.coefs_):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPImageClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="not the same"):
        part.partial_fit(X, y, classes=[0, 1, 2, 3, 4])


@pytest.mark.parametrize("method", ["partial_fit", "warm_start"])
def test_weights_assigned_by_hand_are_not_continued(method):
    # partial_fit failed with "AttributeError: ... no attribute '_optimizer_state'".
    X, y = _blobs()
    clf = MLPImageClassifier(hidden_layer_sizes=(2,), warm_start=method == "warm_start")
    clf.coefs_ = [np.zeros((X.shape[1], 2)), np.zeros((2, 3))]
    clf.intercepts_ = [np.zeros(2), np.zeros(3)]
    with pytest.raises(ValueError, match="this model has coefs_ but not classes_, "
                                         "n_features_in_, _optimizer_state, .*: warm_start "
                                         "and partial_fit continue a model that fastmlp "
                                         "fitted"):
        if method == "partial_fit":
            clf.partial_fit(X, y, classes=np.unique(y))
        else:
            clf.fit(X, y)
    assert np.array_equal(clf.coefs_[1], np.zeros((2, 3)))  # left as it was


def test_pickle_and_joblib_round_trip(tmp_path):
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
    joblib.dump(clf, tmp_path / "m.joblib")
    assert np.array_equal(joblib.load(tmp_path / "m.joblib").predict(X), clf.predict(X))
    c = clone(clf)
    assert not hasattr(c, "coefs_") and c.get_params() == clf.get_params()


def test_trained_arrays_start_on_cache_lines():
    # The core splits W, b and their optimizer state between threads by columns; a
    # buffer off a 64-byte boundary would put one cache line of every row under two
    # cores' writes. A model trained after unpickling (fresh, unaligned arrays) too.
    X, y = _blobs()

    def starts(clf):
        state = clf._optimizer_state
        arrays = [*clf.coefs_, *clf.intercepts_]
        for slot_coefs, slot_intercepts in state.slots.values():
            arrays += [*slot_coefs, *slot_intercepts]
        return {a.ctypes.data % 64 for a in arrays}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPImageClassifier(hidden_layer_sizes=(32,), max_iter=1, warm_start=True,
                                 random_state=0).fit(X, y)
        assert starts(clf) == {0}
        again = pickle.loads(pickle.dumps(clf))
        again.fit(X, y)
        clf.fit(X, y)
    assert starts(again) == {0}
    assert all(np.array_equal(a, b) for a, b in zip(again.coefs_, clf.coefs_))


def test_diverging_training_raises_and_keeps_the_model():
    X, y = _blobs()
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0,
                             learning_rate_init=0.01, max_iter=1, warm_start=True,
                             random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    n_iter = clf.n_iter_
    clf.set_params(learning_rate_init=1e30)
    with pytest.raises(ValueError, match="learning_rate_init|Scale the inputs"):
        clf.fit(X * 1e6, y)
    assert clf.n_iter_ == n_iter
    assert all(np.array_equal(a, b) for a, b in zip(before, clf.coefs_))
    fresh = MLPImageClassifier(solver="sgd", learning_rate_init=1e30, random_state=0)
    with pytest.raises(TrainingDivergedError, match="diverged"):
        fresh.fit(X * 1e6, y)
    assert not hasattr(fresh, "coefs_")


def test_divergence_from_a_huge_alpha_names_alpha():
    # The message advised only a smaller learning rate and scaled inputs.
    X, y = _blobs()
    clf = MLPImageClassifier(solver="sgd", alpha=1e30, batch_size=50, random_state=0)
    with pytest.raises(TrainingDivergedError,
                       match=r"Lower alpha, the L2 penalty \(now 1e\+30\).*= 2e\+25 times"):
        clf.fit(X, y)
    fresh = MLPImageClassifier(solver="sgd", learning_rate_init=1e30, random_state=0)
    with pytest.raises(TrainingDivergedError) as info:
        fresh.fit(X * 1e6, y)
    assert "alpha" not in str(info.value)  # alpha=1e-4 is not what diverged


def test_keyboard_interrupt_leaves_a_usable_model():
    X, y = _blobs(n=3000)

    def interrupt(est, info):
        if info["event"] == "epoch" and info["epoch"] == 2:
            raise KeyboardInterrupt

    clf = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=0.01,
                             random_state=0)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf.fit(X, y, callback=interrupt)
    assert clf.n_iter_ == 2
    assert clf.score(X, y) > 0.5


@quiet
def test_early_stopping_restores_best_weights():
    X, y = _blobs(n=1000)
    for metric in ("accuracy", "loss"):
        clf = MLPImageClassifier(hidden_layer_sizes=(32,), early_stopping=True,
                                 early_stopping_metric=metric, n_iter_no_change=3,
                                 max_iter=200, random_state=0).fit(X, y)
        assert clf.n_iter_ < 200
        assert len(clf.validation_scores_) == clf.n_iter_
        assert len(clf.validation_loss_curve_) == clf.n_iter_
        assert clf.best_loss_ is None
        assert clf.best_validation_score_ == max(clf.validation_scores_)
        assert {"val_loss", "val_accuracy"} <= set(clf.history_[-1])


@quiet
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_continuing_without_early_stopping_drops_the_validation_record(how):
    # warm_start after turning early_stopping off kept the earlier fit's
    # validation_scores_ and best_validation_score_, as if this fit had them.
    X, y = _blobs()
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=3,
                             random_state=0).fit(X, y)
    assert len(clf.validation_scores_) == 3 and clf.best_validation_score_ is not None
    clf.set_params(early_stopping=False, warm_start=True)
    clf.fit(X, y) if how == "warm_start" else clf.partial_fit(X, y)
    fresh = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    for est in (clf, fresh):
        assert est.validation_scores_ is None and est.validation_loss_curve_ is None
        assert est.best_validation_score_ is None and est.best_loss_ is not None
    assert clf.best_loss_ == min(clf.loss_curve_[3:])
    clf.set_params(early_stopping=True).fit(X, y)  # and a new record starts
    assert len(clf.validation_scores_) == clf.max_iter
    assert clf.best_validation_score_ == max(clf.validation_scores_)


@pytest.mark.parametrize("y, names", [
    ([0, 0, 0, 1, 0, 0, 0, 0], r"\['True'\] \('True' stands for classes_\[1\] = 1\)"),
    (["cat"] * 5 + ["dog"] + ["emu"] * 5, r"\['dog'\]"),
])
def test_early_stopping_needs_two_samples_of_each_class(y, names):
    # The split is stratified as in scikit-learn, whose error names the lonely class
    # ('True' for a binary problem's classes_[1], as scikit-learn's own message does).
    X = np.arange(2 * len(y), dtype=np.float32).reshape(len(y), 2)
    clf = MLPImageClassifier(early_stopping=True, validation_fraction=0.5)
    with pytest.raises(ValueError, match=r"only 1 member.*too few members are: " + names):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


def test_early_stopping_needs_a_validation_sample_per_class():
    X, y = _blobs(n=40, classes=4)
    with pytest.raises(ValueError, match="number of classes = 4.*pass X_val and y_val"):
        MLPImageClassifier(early_stopping=True, validation_fraction=0.05).fit(X, y)


@quiet
@pytest.mark.parametrize("classes", [2, 5])
def test_predict_log_proba_is_the_log_of_predict_proba(classes):
    X, y = _blobs(n=300, classes=classes)
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)),
                               rtol=1e-7)
    # Logits far apart: probabilities round to 0, their logarithms stay finite.
    clf.coefs_[-1] *= np.float32(1e4)
    proba, log_proba = clf.predict_proba(X), clf.predict_log_proba(X)
    zero = proba == 0
    assert zero.any() and np.isfinite(log_proba).all()
    assert (log_proba[zero] < np.log(np.finfo(np.float32).tiny)).all()
    np.testing.assert_allclose(log_proba[~zero], np.log(proba[~zero]), rtol=1e-7)


@quiet
def test_optimizer_learning_rate_under_scikit_learn_name():
    # code written for MLPClassifier reads the current learning rate as
    # _optimizer.learning_rate; invscaling runs on t_ over warm-start fits.
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    clf = MLPImageClassifier(hidden_layer_sizes=4, solver="sgd", learning_rate="invscaling",
                             power_t=0.25, max_iter=1, warm_start=True).fit(X, y).fit(X, y)
    assert clf._optimizer is clf._optimizer_state
    assert clf._optimizer.learning_rate == clf.learning_rate_init / 9 ** 0.25
    assert not hasattr(MLPImageClassifier(), "_optimizer")


@quiet
def test_class_weight_shifts_predictions():
    X, y = make_blobs(n_samples=400, centers=3, cluster_std=8, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), class_weight={0: 1000, 1: 1e-4, 2: 1e-4},
                             max_iter=100, random_state=0).fit(X, y)
    assert np.mean(clf.predict(X) == 0) > 0.87
    balanced = MLPImageClassifier(class_weight="balanced", max_iter=5, random_state=0)
    balanced.fit(X[:250], y[:250])


# --------------------------------------------------------------------------------------
# Inputs as users have them
# --------------------------------------------------------------------------------------

@quiet
def test_image_shapes_dtypes_and_layouts(rng):
    n = 120
    imgs = rng.integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8)
    y = np.array(["cat", "dog", "emu"])[np.arange(n) % 3]
    params = dict(hidden_layer_sizes=(10,), max_iter=2, random_state=0)
    ref = MLPImageClassifier(**params).fit(imgs.reshape(n, -1).astype(np.float32) / 255, y)
    base = ref.predict_proba(imgs.reshape(n, -1) / 255)
    for X in (imgs / 255,  # (n, H, W, C) float64
              np.asfortranarray(imgs.reshape(n, -1) / 255),
              (imgs / 255).astype(np.float32).reshape(n, 6, 15)):
        clf = MLPImageClassifier(**params).fit(X, y)
        np.testing.assert_allclose(clf.predict_proba(X), base, atol=1e-6)
        assert clf.n_features_in_ == 90
        assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    ro = imgs.copy()
    ro.flags.writeable = False
    clf = MLPImageClassifier(**params).fit(ro, y)  # uint8, read-only
    assert clf.predict(ro).shape == (n,)
    clf = MLPImageClassifier(**params).fit(imgs.reshape(n, -1).tolist(), list(y))
    with pytest.raises(ValueError, match="features"):
        clf.predict(imgs[:, :2].reshape(n, -1))


@quiet
def test_binary_and_pandas(rng):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    y = pd.Series(np.where(X["a"] > 0, "yes", "no"))
    clf = MLPImageClassifier(hidden_layer_sizes=(6,), max_iter=50, learning_rate_init=0.01,
                             random_state=0).fit(X, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c"]
    assert clf.predict_proba(X).shape == (80, 2) and clf.n_outputs_ == 2
    assert clf.score(X, y) > 0.85


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.full((4, 2), np.nan), [0, 1, 0, 1], "NaN"),
        (np.full((4, 2), np.inf), [0, 1, 0, 1], "infinity"),
        (np.ones((4, 2)) + 1j, [0, 1, 0, 1], "[Cc]omplex"),
        (np.ones((0, 2)), [], "0 sample"),
        (np.ones((4, 2)), [0, 0, 0, 0], "class"),
        (np.ones((4, 2)), [0, 1, 0], "inconsistent numbers of samples"),
        (np.ones((4, 2)), [0.5, 1.5, 2.5, 3.5], "Unknown label type"),
    ],
)
def test_bad_input_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        MLPImageClassifier(max_iter=1).fit(X, y)


def test_bad_parameters():
    X, y = _blobs(n=40)
    for params in ({"hidden_layer_sizes": (0,)}, {"hidden_layer_sizes": (3, -1)},
                   {"solver": "lbfgs"}, {"batch_size": 0}, {"learning_rate_init": 0.0}):
        with pytest.raises(ValueError):
            MLPImageClassifier(**params).fit(X, y)


@pytest.mark.parametrize("name", ["n_threads", "random_shift", "max_iter", "batch_size",
                                  "n_iter_no_change"])
def test_bool_is_no_integer_parameter(name):
    # True is an Integral to Python: n_threads=True trained on 1 thread, max_iter=True
    # for 1 epoch, random_shift=True shifted by 1 pixel, with no word.
    X, y = _blobs(n=40)
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter.*Got True"):
        MLPImageClassifier(**{"max_iter": 1, "image_shape": (4, 5), name: True}).fit(X, y)
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter.*Got False"):
        MLPImageClassifier(**{name: False}).partial_fit(X, y, classes=[0, 1, 2, 3])


@pytest.mark.parametrize("params, value", [
    ({"learning_rate_init": 1e-320}, "0.0 in float32"),  # positive, but 0 in float32
    ({"learning_rate_init": 1e-40}, "in float32"),  # subnormal there: trains nothing
    ({"learning_rate_init": 1e300}, "inf in float32"),
    ({"solver": "sgd", "learning_rate_init": 1e-320}, "0.0 in float32"),
    ({"epsilon": 1e300}, "inf in float32"),
    ({"epsilon": 1e-50}, "0.0 in float32"),
    ({"alpha": 1e300}, "inf in float32"),
])
def test_parameters_float32_cannot_hold_raise(params, value):
    # The core trains in float32: these trained nothing, silently, or diverged with an
    # error blaming the inputs.
    X, y = _blobs(n=40)
    name = next(k for k in params if k != "solver")
    clf = MLPImageClassifier(max_iter=1, **params)
    with pytest.raises(ValueError, match=rf"'{name}' parameter.*float32.*{value}"):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")
    with pytest.raises(ValueError, match=rf"'{name}' parameter"):
        MLPImageClassifier(max_iter=1, **params).partial_fit(X, y, classes=[0, 1, 2, 3])
    ok = MLPImageClassifier(max_iter=1, **params).set_params(**{name: 1e-3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ok.fit(X, y)
    if name == "alpha":  # 0 stays a valid penalty
        MLPImageClassifier(max_iter=1, alpha=0.0).partial_fit(X, y, classes=[0, 1, 2, 3])


@quiet
def test_invscaling_rate_underflowing_float64_trains_on():
    # (t + 1) ** power_t beyond float64 raised OverflowError after the first epoch; the
    # rate is then the smallest positive double, 0 in float32 as the exact value is.
    X, y = _blobs(n=60)
    clf = MLPImageClassifier(hidden_layer_sizes=(4,), solver="sgd", learning_rate="invscaling",
                             power_t=200, max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    rates = [h["learning_rate"] for h in clf.history_]
    assert rates[0] == clf.learning_rate_init and rates[1:] == [5e-324, 5e-324]
    assert np.float32(clf._optimizer.learning_rate) == 0
    assert clf.partial_fit(X, y).n_iter_ == 4  # and partial_fit runs on at that rate


@quiet
def test_concurrent_predict_from_threads():
    X, y = _blobs(n=4000, d=50)
    clf = MLPImageClassifier(hidden_layer_sizes=(64,), max_iter=1, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    results = [None] * 6

    def work(i):
        results[i] = clf.predict_proba(X)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, expected) for r in results)


# --------------------------------------------------------------------------------------
# scikit-learn workflows
# --------------------------------------------------------------------------------------

@quiet
def test_grid_search_parallel_over_widths_and_scaling():
    from fastmlp import PixelScaler

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] * (255 / 16), y[:600]  # pixel-like 0..255 range (16 maps to 255)
    pipe = make_pipeline(PixelScaler(), MLPImageClassifier(max_iter=20, random_state=0))
    grid = GridSearchCV(pipe, {"mlpimageclassifier__hidden_layer_sizes": [(16,), (64,)],
                               "pixelscaler__mode": ["unit", "symmetric", "standard"]},
                        cv=3, n_jobs=2)
    grid.fit(X, y)
    assert grid.best_score_ > 0.85
    assert len(grid.cv_results_["params"]) == 6


def test_threads_follow_threadpoolctl_and_omp_settings():
    from threadpoolctl import threadpool_limits

    from fastmlp import _core

    with threadpool_limits(limits=1):
        assert _core.max_threads() == 1
    assert _core.max_threads() >= 1


@quiet
def test_memory_mapped_training_data(tmp_path):
    X, y = _blobs(n=300)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(mm, y)
    b = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_))
    assert np.array_equal(a.predict(mm), b.predict(X))


@quiet
def test_verbose_prints_epochs_and_a_progress_bar_on_terminals(capsys, monkeypatch):
    import fastmlp.estimator as est

    X, y = _blobs(n=300)
    MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, verbose=True).fit(X, y)
    out, err = capsys.readouterr()
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out
    assert err == ""  # not a terminal: no bar
    monkeypatch.setattr(est._progress, "stderr_is_terminal", lambda: True)
    MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, verbose=True).fit(X, y)
    out, err = capsys.readouterr()
    assert "Epoch 1/2 [" in err and "Epoch 2/2 [" in err and "300/300" in err


@quiet
def test_prediction_in_blocks_equals_one_call(monkeypatch):
    import fastmlp.estimator as est

    X, y = _blobs(n=1000)
    clf = MLPImageClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0).fit(X, y)
    whole = clf.predict_proba(X)
    monkeypatch.setattr(est, "_PREDICT_BLOCK_ROWS", 77)
    assert np.array_equal(clf.predict_proba(X), whole)
    assert np.array_equal(clf.predict_proba(X.astype(np.float64)), whole)


@quiet
@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "input_scaler"])
def test_arrays_read_without_validation_predict_as_validated_ones(scaled):
    """Plain NumPy arrays of the fitted width skip scikit-learn's validation at prediction:
    each must give bitwise what the same values give through it (as a list), and what
    that validation refuses must still be refused."""
    from fastmlp import PixelScaler

    rng = np.random.default_rng(0)
    X8 = rng.integers(0, 256, size=(300, 12), dtype=np.uint8)
    y = rng.integers(0, 3, size=300)
    clf = MLPImageClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                             input_scaler=PixelScaler() if scaled else None)
    clf.fit(X8 if scaled else X8 / np.float32(255), y)
    for X in (X8, X8.astype(np.float32), X8.astype(np.float64),
              X8.astype(">f4"), X8.reshape(300, 3, 4), X8[:1], X8[::2]):
        rows = X.reshape(len(X), -1).tolist()
        assert np.array_equal(clf.predict_proba(X), clf.predict_proba(rows)), X.dtype
        assert np.array_equal(clf.predict(X), clf.predict(rows))
    with pytest.raises(ValueError, match="X has 11 features, but MLPImageClassifier is "
                                         "expecting 12 features"):
        clf.predict(X8[:, :11])
    with pytest.raises(ValueError, match="0 sample"):
        clf.predict(X8[:0])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((2, 12), np.nan, dtype=np.float32))
    with pytest.raises(NotFittedError):
        MLPImageClassifier().predict(X8)


@quiet
def test_a_list_of_images_is_an_image_array():
    """[img, ...] of 2-D images: the geometry augmentation needs, and one-image predict."""
    rng = np.random.default_rng(0)
    images = rng.random((60, 6, 5), dtype=np.float32)
    y = rng.integers(0, 3, size=60)

    def fitted(X):
        return MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_shift=1,
                                  random_state=0).fit(X, y)

    from_array, from_list = fitted(images), fitted(list(images))
    for a, b in zip(from_array.coefs_, from_list.coefs_):
        assert np.array_equal(a, b)
    assert np.array_equal(from_array.predict_proba([images[0]]),
                          from_array.predict_proba(images[:1]))
    with pytest.raises(ValueError):
        from_array.predict([images[0], images[1][:3]])  # ragged


@quiet
def test_images_of_another_shape_than_fit_saw_are_refused(rng):
    # Image arrays are flattened in C order: (3, 8, 8) or (4, 16, 3) images given to a
    # model fitted on (8, 8, 3) ones have the right size but their pixels in another
    # order, and were classified as garbage without an error.
    X = rng.random((60, 8, 8, 3), dtype=np.float32)
    y = np.arange(60) % 3
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    assert clf.image_shape_in_ == (8, 8, 3)
    before = [c.copy() for c in clf.coefs_]
    refused = r"holds images of shape \(%s\).* fitted on images of shape \(8, 8, 3\)"
    for other in (X[:6].transpose(0, 3, 1, 2), X[:6].reshape(6, 4, 16, 3)):
        match = refused % ", ".join(map(str, other.shape[1:]))
        for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
            with pytest.raises(ValueError, match=match):
                method(other)
        with pytest.raises(ValueError, match=match):
            clf.score(other, y[:6])
        with pytest.raises(ValueError, match=match):
            clf.partial_fit(other, y[:6])
        with pytest.raises(ValueError, match=match):
            clone(clf).set_params(warm_start=True).fit(X, y).fit(other, y[:6])
        with pytest.raises(ValueError, match=match.replace("holds", "X_val holds")):
            clone(clf).set_params(early_stopping=True).fit(X, y, X_val=other, y_val=y[:6])
    assert all(np.array_equal(a, b) for a, b in zip(before, clf.coefs_))
    # Rows are taken as the user flattened them, and images of the fitted shape as ever.
    rows = X.reshape(60, -1)
    np.testing.assert_array_equal(clf.predict_proba(rows), clf.predict_proba(X))
    assert clf.partial_fit(rows[:6], y[:6]).image_shape_in_ == (8, 8, 3)
    assert clf.partial_fit(X[:6], y[:6]).n_iter_ == 4
    # A model fitted on rows has no image shape, and takes images of its width.
    flat = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    flat.fit(rows, y)
    assert flat.image_shape_in_ is None
    np.testing.assert_array_equal(flat.predict_proba(X[:6].transpose(0, 3, 1, 2)),
                                  flat.predict_proba(X[:6].transpose(0, 3, 1, 2)
                                                     .reshape(6, -1)))
    assert pickle.loads(pickle.dumps(clf)).image_shape_in_ == (8, 8, 3)


def test_more_than_4_dimensions_are_refused(rng):
    # A 5-D X was flattened by fit without a word (PixelScaler refused it): no image
    # layout has 5 axes, so the samples were likely not what the user meant.
    X = rng.random((30, 4, 4, 3, 1), dtype=np.float32)
    y = np.arange(30) % 2
    clf = MLPImageClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0)
    with pytest.raises(ValueError, match="got an array with 5 dimensions"):
        clf.fit(X, y)
    assert not hasattr(clf, "n_features_in_")
    with pytest.raises(ValueError, match="got an array with 5 dimensions"):
        clf.partial_fit(X, y, classes=[0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X.reshape(30, -1), y)
    with pytest.raises(ValueError, match="got an array with 5 dimensions"):
        clf.predict(X)


@quiet
def test_a_model_fitted_with_feature_names_still_checks_them_at_prediction():
    pd = pytest.importorskip("pandas")
    X, y = _blobs(n=200, d=6)
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(6)])
    clf = MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(frame, y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        assert np.array_equal(clf.predict_proba(X), clf.predict_proba(frame))
