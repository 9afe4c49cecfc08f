"""sample_weight in fit and partial_fit, metadata routing, explicit validation data, and
the semantics shared with scikit-learn's MLPClassifier."""

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.utils import compute_sample_weight
from sklearn.utils._param_validation import InvalidParameterError

from fastmlp import MLPImageClassifier, PixelScaler

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FIT = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)


def _data(rng, n=120, d=10, k=3):
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    return X, y


def _bitwise(a, b):
    return all(u.tobytes() == v.tobytes()
               for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


def test_balanced_weights_equal_class_weight_balanced_bitwise(rng):
    X, y = _data(rng)
    a = MLPImageClassifier(class_weight="balanced", **FIT).fit(X, y)
    b = MLPImageClassifier(**FIT).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    assert _bitwise(a, b)


def test_sample_and_class_weights_multiply(rng):
    X, y = _data(rng)
    w = rng.uniform(0.1, 3, size=len(y))
    cw = {0: 1.0, 1: 2.5, 2: 0.5}
    a = MLPImageClassifier(class_weight=cw, **FIT).fit(X, y, sample_weight=w)
    b = MLPImageClassifier(**FIT).fit(X, y, sample_weight=compute_sample_weight(cw, y) * w)
    assert _bitwise(a, b)
    c = MLPImageClassifier(class_weight=cw, **FIT).fit(X, y)
    assert not _bitwise(a, c)


def test_weights_of_one_change_nothing(rng):
    X, y = _data(rng)
    a = MLPImageClassifier(**FIT).fit(X, y)
    b = MLPImageClassifier(**FIT).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-6)


def test_integer_weights_repeat_samples_in_full_batch_training(rng):
    X, y = _data(rng, n=40)
    w = rng.integers(0, 4, size=len(y))
    w[:3] = 1  # every class keeps a sample
    full_batch = dict(solver="sgd", momentum=0.0, shuffle=False, alpha=0.0, max_iter=20,
                      learning_rate_init=0.1, hidden_layer_sizes=(8,), random_state=0)
    weighted = MLPImageClassifier(batch_size=len(y), **full_batch).fit(X, y, sample_weight=w)
    repeated = MLPImageClassifier(batch_size=int(w.sum()), **full_batch).fit(
        np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X),
                               rtol=1e-5, atol=1e-7)


def test_partial_fit_takes_weights(rng):
    X, y = _data(rng)
    w = rng.uniform(0, 2, size=len(y))
    a = MLPImageClassifier(**FIT).partial_fit(X, y, classes=[0, 1, 2], sample_weight=w)
    b = MLPImageClassifier(**FIT).partial_fit(X, y, classes=[0, 1, 2])
    assert not _bitwise(a, b)
    c = MLPImageClassifier(**FIT).partial_fit(X, y, classes=[0, 1, 2], sample_weight=w)
    assert _bitwise(a, c)


def test_the_callers_weights_are_not_written(rng):
    X, y = _data(rng)
    w = rng.uniform(0, 2, size=len(y))
    before = w.copy()
    MLPImageClassifier(class_weight="balanced", early_stopping=True, **FIT).fit(
        X, y, sample_weight=w)
    np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("weights, match", [
    (lambda n: np.ones(n - 1), r"sample_weight.shape"),
    (lambda n: np.ones((n, 1)), r"sample_weight.shape"),
    (lambda n: -np.ones(n), "non-negative"),
    (lambda n: np.full(n, np.nan), "finite"),
    (lambda n: np.zeros(n), "non-zero"),
    (lambda n: np.full(n, 1e-46), r"sample_weight\) are all zero in float32"),
    (lambda n: np.full(n, 1e39), r"sample_weight\) exceed float32's range"),
    # subnormal in float32: the loss became NaN, reported as a divergence
    (lambda n: np.full(n, 1e-44), r"sample_weight\) must be 0 or at least float32's smallest"
                                  r" normal.*1e-44 \(sample 0\) and"),
    # some subnormal (or 0 once rounded) among normal weights: silently weightless
    (lambda n: np.r_[np.ones(n - 1), 1e-44], r"smallest normal.*1e-44 \(sample \d+\);"),
    (lambda n: np.r_[1e-46, np.ones(n - 1)], r"smallest normal.*1e-46 \(sample 0\)"),
])
def test_bad_weights_raise(rng, weights, match):
    X, y = _data(rng)
    with pytest.raises(ValueError, match=match):
        MLPImageClassifier(**FIT).fit(X, y, sample_weight=weights(len(y)))


@pytest.mark.parametrize("class_weight, sample_weight, match", [
    ({0: 0, 1: 0, 2: 0}, None, r"\(class_weight\) are all zero"),
    ({0: 1e-30, 1: 1e-30, 2: 1e-30}, 1e-20, r"\(sample_weight times class_weight\) are all"),
    ({0: 1e20, 1: 1, 2: 1}, 1e20, r"\(sample_weight times class_weight\) exceed"),
    ({0: 1e-20, 1: 1, 2: 1}, 1e-20, r"\(sample_weight times class_weight\) must be 0 or"),
    # NaN was said to "exceed float32's range"
    ({0: np.nan, 1: 1, 2: 1}, None, r"class_weight\[0\] is nan: class weights must be finite"),
    ({0: 1, 1: np.inf, 2: 1}, None, r"class_weight\[1\] is inf: class weights must be finite"),
    ({0: 1, 1: 1, 2: -1}, None, r"class_weight\[2\] is -1.0: class weights must be non-neg"),
])
def test_class_weights_float32_cannot_hold_raise(rng, class_weight, sample_weight, match):
    X, y = _data(rng)
    model = MLPImageClassifier(class_weight=class_weight, **FIT)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, sample_weight=sample_weight)
    assert not hasattr(model, "coefs_")


def test_balanced_class_weight_is_refused_by_partial_fit(rng):
    # It was computed from each call's batch, silently unlike fit's.
    X, y = _data(rng)
    model = MLPImageClassifier(class_weight="balanced", **FIT)
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported with "
                                         "partial_fit"):
        model.partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(model, "coefs_")
    weights = {k: len(y) / (3 * np.sum(y == k)) for k in range(3)}
    model.set_params(class_weight=weights).partial_fit(X, y, classes=[0, 1, 2])
    model.set_params(class_weight="balanced")
    with pytest.raises(ValueError, match="not supported with partial_fit"):
        model.partial_fit(X, y)  # also set between calls
    assert model.n_iter_ == 1


def test_a_validation_split_that_leaves_one_side_all_zero_weight_raises(rng):
    # One sample of weight > 0: the split puts it on one side, and the other side has
    # only zero weights - no validation score, or nothing to learn from.
    X, y = _data(rng, n=40)
    w = np.zeros(len(y))
    w[7] = 1.0
    seen = set()
    for seed in range(200):  # until the seeds have put the sample on both sides (a quarter
        if len(seen) == 2:   # of them hold it out: 12 seeds missed one side 3% of the time)
            break
        model = MLPImageClassifier(**{**FIT, "random_state": seed}, early_stopping=True,
                                   validation_fraction=0.25)
        with pytest.raises(ValueError) as exc:
            model.fit(X, y, sample_weight=w)
        assert not hasattr(model, "coefs_")
        message = str(exc.value)
        seen.add("held out for validation" in message)
        assert ("held out for validation" in message and "sample_weight_val" in message
                or "(those left after early_stopping's validation split) are all zero"
                in message), message
    assert seen == {True, False}  # the seeds put the sample on both sides


# -- metadata routing ---------------------------------------------------------------------

def test_weights_route_through_pipeline_cross_validate_and_search(rng):
    X, y = _data(rng, n=90)
    w = rng.uniform(0.2, 2, size=len(y))
    with sklearn.config_context(enable_metadata_routing=True):
        clf = MLPImageClassifier(**FIT).set_fit_request(sample_weight=True)
        pipe = make_pipeline(PixelScaler(mode="unit", max_value=10.0), clf).fit(
            X, y, sample_weight=w)
        direct = MLPImageClassifier(**FIT).fit(
            PixelScaler(mode="unit", max_value=10.0).fit_transform(X), y, sample_weight=w)
        assert _bitwise(pipe[-1], direct)

        cv = KFold(3)
        def requesting():
            return (MLPImageClassifier(**FIT).set_fit_request(sample_weight=True)
                    .set_score_request(sample_weight=True))

        routed = cross_validate(requesting(), X, y, cv=cv, params={"sample_weight": w},
                                return_estimator=True)
        for est, (train, _) in zip(routed["estimator"], cv.split(X)):
            alone = MLPImageClassifier(**FIT).fit(X[train], y[train], sample_weight=w[train])
            assert _bitwise(est, alone)

        search = GridSearchCV(requesting(), {"alpha": [1e-4]}, cv=cv, refit=True)
        search.fit(X, y, sample_weight=w)
        assert _bitwise(search.best_estimator_,
                        MLPImageClassifier(**FIT).fit(X, y, sample_weight=w))


# -- explicit validation data -----------------------------------------------------------

def test_given_validation_data_replaces_the_split(rng):
    X, y = _data(rng)
    X_val, y_val = _data(rng, n=50)
    w_val = rng.uniform(0.1, 2, size=50)
    params = dict(FIT, early_stopping=True, max_iter=6)
    model = MLPImageClassifier(**params).fit(X, y, X_val=X_val, y_val=y_val,
                                             sample_weight_val=w_val)
    assert model.t_ == 6 * len(y)  # every sample of X trained on
    best = int(np.argmax(model.validation_scores_))
    assert model.best_validation_score_ == model.validation_scores_[best]
    # The best epoch's weights are restored: their weighted score is the best one.
    assert model.score(X_val, y_val, sample_weight=w_val) == pytest.approx(
        model.best_validation_score_, abs=1e-12)


def test_given_validation_data_with_the_input_scaler(rng):
    X = rng.integers(0, 256, size=(100, 12), dtype=np.uint8)
    y = np.arange(100) % 3
    X_val = rng.integers(0, 256, size=(40, 12), dtype=np.uint8)
    y_val = np.arange(40) % 3
    params = dict(FIT, early_stopping=True)
    fused = MLPImageClassifier(input_scaler=PixelScaler(), **params).fit(
        X, y, X_val=X_val, y_val=y_val)
    scaler = PixelScaler().fit(X)
    plain = MLPImageClassifier(**params).fit(scaler.transform(X), y,
                                             X_val=scaler.transform(X_val), y_val=y_val)
    assert _bitwise(fused, plain)
    assert fused.validation_scores_ == plain.validation_scores_


@pytest.mark.parametrize("kwargs, early_stopping, match", [
    (dict(X_val=np.zeros((5, 10), np.float32), y_val=np.zeros(5)), False, "early_stopping"),
    (dict(X_val=np.zeros((5, 10), np.float32)), True, "together"),
    (dict(sample_weight_val=np.ones(5)), True, "needs X_val"),
    (dict(X_val=np.zeros((5, 10), np.float32), y_val=np.zeros(4)), True, "one label per"),
    (dict(X_val=np.zeros((5, 10), np.float32), y_val=np.full(5, 7)), True, "not in classes"),
    (dict(X_val=np.zeros((5, 9), np.float32), y_val=np.zeros(5)), True,
     "X_val has 9 features, but X has 10"),
    (dict(X_val=np.full((5, 10), np.nan, np.float32), y_val=np.zeros(5)), True,
     "Input X_val contains NaN"),
    (dict(X_val=np.zeros((5, 10), np.float32), y_val=np.zeros(5),
          sample_weight_val=np.ones(3)), True, "sample_weight_val.shape"),
])
def test_bad_validation_data_raises(rng, kwargs, early_stopping, match):
    X, y = _data(rng)
    model = MLPImageClassifier(early_stopping=early_stopping, **FIT)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, **kwargs)
    assert not hasattr(model, "coefs_")


# -- semantics shared with MLPClassifier ------------------------------------------------

def test_partial_fit_refuses_early_stopping(rng):
    X, y = _data(rng)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPImageClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_refuses_other_classes(rng):
    X, y = _data(rng)
    model = MLPImageClassifier(warm_start=True, **FIT).fit(X, y)
    keep = y != 2
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        model.fit(X[keep], y[keep])
    assert model.n_iter_ == FIT["max_iter"]  # the model is as it was


def test_loss_is_the_last_epochs_loss(rng):
    X, y = _data(rng)
    model = MLPImageClassifier(**FIT).fit(X, y)
    assert model.loss_ == model.loss_curve_[-1]


def test_n_iter_no_change_may_be_infinite(rng):
    X, y = _data(rng)
    model = MLPImageClassifier(n_iter_no_change=np.inf, tol=10.0, **dict(FIT, max_iter=4))
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.n_iter_ == 4  # a tol no epoch can meet never stops it
    with pytest.raises(InvalidParameterError, match="n_iter_no_change"):
        MLPImageClassifier(n_iter_no_change=2.5).fit(X, y)
