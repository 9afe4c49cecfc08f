"""Dropout, decoupled weight decay, the cosine schedule with warmup, label smoothing and
image augmentation: each against a float64 or NumPy reference, finite differences where
there is a gradient, bitwise reproducible with 1 and 2 threads, and off by default."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from fastmlp import MLPImageClassifier, _core, kernels

NEW_PARAMS = dict(dropout=0.2, weight_decay=1e-3, learning_rate="cosine", warmup_epochs=0.5,
                  label_smoothing=0.1, random_shift=1, random_flip=True)


def _images(rng, n=240, h=6, w=5, c=None):
    shape = (n, h, w) if c is None else (n, h, w, c)
    X = rng.normal(size=shape).astype(np.float32)
    y = (X.reshape(n, -1)[:, :4].sum(axis=1) > 0).astype(int) + (X.reshape(n, -1)[:, 5] > 0)
    return X, y


def _fit(X, y, **params):
    params = {"hidden_layer_sizes": (16, 8), "max_iter": 3, "batch_size": 32,
              "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPImageClassifier(**params).fit(X, y)


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in
               zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


# --- every new parameter together: deterministic, any thread count ----------------------

@pytest.mark.parametrize("params", [NEW_PARAMS, {**NEW_PARAMS, "solver": "sgd"},
                                    {"dropout": [0.5, 0.1]}, {"random_flip": True}])
def test_new_parameters_are_bitwise_reproducible_with_any_thread_count(rng, params):
    X, y = _images(rng)
    one = _fit(X, y, n_threads=1, **params)
    assert _same(one, _fit(X, y, n_threads=2, **params))
    assert _same(one, _fit(X, y, n_threads=3, **params))
    assert not _same(one, _fit(X, y, n_threads=1))  # and they do change training


def test_the_defaults_leave_training_as_it_was(rng):
    X, y = _images(rng)
    explicit = dict(dropout=0.0, weight_decay=0.0, learning_rate="constant", warmup_epochs=0.0,
                    label_smoothing=0.0, random_shift=0, random_flip=False)
    assert _same(_fit(X, y), _fit(X, y, **explicit))
    assert _same(_fit(X, y), _fit(X, y, dropout=[0.0, 0.0], image_shape=(6, 5)))


def test_chunking_does_not_change_the_masks(rng, monkeypatch):
    from fastmlp import _training
    X, y = _images(rng, n=400)
    whole = _fit(X, y, **NEW_PARAMS)
    monkeypatch.setattr(_training, "FIRST_CHUNK_SAMPLES", 32)
    monkeypatch.setattr(_training, "CHUNK_SECONDS", 1e-9)  # every chunk one batch long
    assert _same(whole, _fit(X, y, **NEW_PARAMS))


def test_partial_fit_continues_the_draws_like_fit(rng):
    X, y = _images(rng)
    params = {k: v for k, v in NEW_PARAMS.items() if k not in ("learning_rate", "warmup_epochs")}
    fitted = _fit(X, y, max_iter=2, shuffle=False, **params)
    est = MLPImageClassifier(hidden_layer_sizes=(16, 8), batch_size=32, random_state=0,
                             shuffle=False, **params)
    for _ in range(2):
        est.partial_fit(X, y, classes=np.unique(y))
    assert _same(fitted, est)


# --- dropout ------------------------------------------------------------------------------

def test_dropout_masks_are_keyed_by_sample_step_and_unit():
    samples = np.arange(2000, dtype=np.int64)
    mask = _core.testing.dropout_mask(7, 3, samples, 0, 64, 0.25)
    assert mask.shape == (2000, 64) and set(np.unique(mask)) == {0, 1}
    assert abs(mask.mean() - 0.75) < 0.01
    # The same sample gives the same row wherever it is drawn; another step, another mask.
    rev = _core.testing.dropout_mask(7, 3, samples[::-1].copy(), 0, 64, 0.25)
    np.testing.assert_array_equal(rev[::-1], mask)
    assert (mask != _core.testing.dropout_mask(7, 4, samples, 0, 64, 0.25)).mean() > 0.3
    assert (mask != _core.testing.dropout_mask(7, 3, samples, 1, 64, 0.25)).mean() > 0.3
    assert _core.testing.dropout_mask(7, 3, samples, 0, 64, 0.0).all()


def test_inverted_dropout_keeps_the_expected_activation(rng):
    # E[mask * h / (1 - p)] = h: over many samples the mean kept-and-scaled value is h.
    p, n, width = 0.4, 20000, 8
    mask = _core.testing.dropout_mask(1, 1, np.arange(n, dtype=np.int64), 0, width, p)
    scaled = mask * np.float32(1 / (1 - p))
    np.testing.assert_allclose(scaled.mean(axis=0), 1.0, atol=0.03)


def _mlp_loss_with_mask(coefs, intercepts, X, y, mask, p):
    """Loss of a 1-hidden-layer ReLU MLP whose hidden units are dropped by a fixed mask."""
    h = np.maximum(X @ coefs[0] + intercepts[0], 0) * mask / (1 - p)
    z = h @ coefs[1] + intercepts[1]
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def _finite_differences(f, W, eps=1e-6):
    """Central differences of f at W, one element at a time."""
    fd = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        up, dn = W.copy(), W.copy()
        up[idx] += eps
        dn[idx] -= eps
        fd[idx] = (f(up) - f(dn)) / (2 * eps)
    return fd


def test_dropout_gradient_matches_finite_differences_with_its_mask(rng):
    # One full-batch plain-SGD step: W_new = W - lr * grad, so grad = (W - W_new) / lr,
    # which must equal the finite-difference gradient of the loss under the same mask.
    n, d, h, p, lr = 12, 5, 7, 0.3, 1.0
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.arange(n) % 3
    est = MLPImageClassifier(hidden_layer_sizes=(h,), solver="sgd", momentum=0.0, alpha=0.0,
                             batch_size=n, learning_rate_init=lr, max_iter=1, shuffle=False,
                             dropout=p, random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    # The same initialization (random_state=0 draws it first), and the mask of step 1.
    coefs, intercepts = est._init_params([d, h, 3], np.random.RandomState(0))
    mask = _core.testing.dropout_mask(est._noise_seed, 1, np.arange(n, dtype=np.int64), 0, h,
                                      p)
    coefs64 = [c.astype(np.float64) for c in coefs]
    ints64 = [b.astype(np.float64) for b in intercepts]
    for layer in (0, 1):
        grad = (coefs64[layer] - est.coefs_[layer]) / lr

        def loss_at(W, layer=layer):
            changed = [W if k == layer else c for k, c in enumerate(coefs64)]
            return _mlp_loss_with_mask(changed, ints64, X, y, mask, p)

        np.testing.assert_allclose(grad, _finite_differences(loss_at, coefs64[layer]),
                                   atol=2e-5)


def test_dropout_has_no_effect_at_inference(rng):
    X, y = _images(rng)
    est = _fit(X, y, dropout=0.5)
    a = X.reshape(len(X), -1).astype(np.float64)
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        a = np.maximum(a @ W + b, 0)  # no mask, no scaling
    z = a @ est.coefs_[-1] + est.intercepts_[-1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(est.predict_proba(X), p / p.sum(axis=1, keepdims=True),
                               atol=1e-5)


# --- label smoothing ----------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1, 0.9])
def test_label_smoothing_loss_and_gradient_match_float64(rng, eps):
    n, c = 9, 5
    z = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, n)
    loss, grad = kernels.softmax_cross_entropy(z, y, label_smoothing=eps)
    z64 = z.astype(np.float64)
    q = np.full((n, c), eps / c)
    q[np.arange(n), y] += 1 - eps
    lse = np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1)) + z64.max(1)
    np.testing.assert_allclose(loss, np.mean(lse - (q * z64).sum(1)), rtol=1e-6)
    p = np.exp(z64 - lse[:, None])
    np.testing.assert_allclose(grad, (p - q) / n, atol=1e-7)
    # and the gradient is the loss's derivative
    h = 1e-3
    fd = np.zeros((n, c))
    for i in range(n):
        for j in range(c):
            zp, zm = z64.copy(), z64.copy()
            zp[i, j] += h
            zm[i, j] -= h
            f = lambda zz: np.mean(np.log(np.exp(zz).sum(1)) - (q * zz).sum(1))  # noqa: E731
            fd[i, j] = (f(zp) - f(zm)) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=1e-6)


def test_label_smoothing_zero_is_the_plain_cross_entropy_bitwise(rng):
    z = rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.integers(0, 4, 7)
    a = kernels.softmax_cross_entropy(z, y)
    b = kernels.softmax_cross_entropy(z, y, label_smoothing=0.0)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


# --- weight decay --------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_one_step_of_decoupled_weight_decay_matches_float64(rng, solver):
    n, d, h, lr, wd = 10, 4, 3, 0.05, 0.1
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.arange(n) % 2
    common = dict(hidden_layer_sizes=(h,), solver=solver, momentum=0.0, alpha=0.0,
                  batch_size=n, learning_rate_init=lr, shuffle=False, random_state=0)
    plain = MLPImageClassifier(**common).partial_fit(X, y, classes=[0, 1])
    decayed = MLPImageClassifier(weight_decay=wd, **common).partial_fit(X, y, classes=[0, 1])
    coefs, intercepts = MLPImageClassifier(**common)._init_params([d, h, 2],
                                                                 np.random.RandomState(0))
    for W0, Wp, Wd in zip(coefs, plain.coefs_, decayed.coefs_):
        # decayed = W0 * (1 - lr wd) - step, plain = W0 - step, with the same gradient step
        expect = Wp.astype(np.float64) - lr * wd * W0.astype(np.float64)
        np.testing.assert_allclose(Wd, expect, atol=2e-7)
    for bp, bd in zip(plain.intercepts_, decayed.intercepts_):
        np.testing.assert_array_equal(bp, bd)  # biases are not decayed


# --- the cosine schedule --------------------------------------------------------------------

def _cosine(lr, s, warm, total):
    if warm > 0 and s <= warm:
        return lr * s / warm
    progress = min(1.0, (s - warm - 1) / (total - warm)) if total > warm else 1.0
    return lr * 0.5 * (1 + np.cos(np.pi * progress))


def test_cosine_rate_of_every_step_matches_the_formula():
    c = _core.OptimConfig()
    c.learning_rate, c.schedule = 0.1, _core.LrSchedule.cosine
    c.warmup_steps, c.total_steps, c.schedule_t0 = 7.0, 40.0, 5.0
    for t in range(6, 60):
        assert _core.scheduled_learning_rate(c, t) == pytest.approx(
            _cosine(0.1, t - 5, 7, 40), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_cosine_steps_follow_the_schedule_across_chunks_and_warm_start(rng, solver,
                                                                       monkeypatch):
    # Record the rate of every step the core takes, through the optimizer config it is
    # given and the step count it advances.
    from fastmlp import _training
    monkeypatch.setattr(_training, "FIRST_CHUNK_SAMPLES", 64)
    monkeypatch.setattr(_training, "CHUNK_SECONDS", 1e-9)
    real = _core.train_batches
    rates = []

    def recording(**kw):
        t = int(kw["steps"][0])
        res = real(**kw)
        rates.extend(_core.scheduled_learning_rate(kw["optimizer"], s)
                     for s in range(t + 1, res.t + 1))
        return res

    monkeypatch.setattr(_core, "train_batches", recording)
    X, y = _images(rng, n=200)
    est = _fit(X, y, solver=solver, learning_rate="cosine", warmup_epochs=1,
               learning_rate_init=0.01, max_iter=4, batch_size=50, warm_start=True)
    steps = 4 * 4
    expect = [_cosine(0.01, s, 4, steps) for s in range(1, steps + 1)]
    np.testing.assert_allclose(rates, expect, rtol=1e-12)
    rates.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)  # a warm-started fit restarts the schedule
    np.testing.assert_allclose(rates, expect, rtol=1e-12)
    assert est.history_[-1]["learning_rate"] == pytest.approx(expect[-1])


# --- augmentation ---------------------------------------------------------------------------

def _reference_augment(img, dy, dx, flip, channels_first):
    """NumPy reference: mirror, then shift by (dy, dx) filling from the border."""
    if channels_first:
        img = np.moveaxis(img, 0, -1)
    H, W = img.shape[:2]
    rows = np.clip(np.arange(H) - dy, 0, H - 1)
    cols = np.clip(np.arange(W) - dx, 0, W - 1)
    if flip:
        cols = W - 1 - cols
    out = img[rows][:, cols]
    return np.moveaxis(out, -1, 0) if channels_first else out


@pytest.mark.parametrize("shape, channels_first", [((7, 5), False), ((6, 4, 3), False),
                                                   ((3, 6, 4), True)])
def test_gathered_images_equal_a_numpy_shift_and_flip(rng, shape, channels_first):
    n = 300
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    if len(shape) == 2:
        geometry = (*shape, 1, False)
    elif channels_first:
        geometry = (shape[1], shape[2], shape[0], True)
    else:
        geometry = (*shape, False)
    samples = rng.permutation(n).astype(np.int64)
    out, draws = _core.testing.augment_rows(X.reshape(n, -1), samples, seed=11, step=4,
                                            image=geometry, shift=2, flip=True)
    assert set(np.unique(draws[:, 0])) == set(np.unique(draws[:, 1])) == set(range(-2, 3))
    assert set(np.unique(draws[:, 2])) == {0, 1}
    for r, s in enumerate(samples):
        img = X[s] if len(shape) == 3 else X[s][..., None]
        expect = _reference_augment(img, draws[r, 0], draws[r, 1], draws[r, 2],
                                    channels_first)
        np.testing.assert_array_equal(out[r], expect.reshape(-1))
    # The draw belongs to the sample and the step, not to the position in the batch.
    out2, draws2 = _core.testing.augment_rows(X.reshape(n, -1), samples[::-1].copy(), seed=11,
                                              step=4, image=geometry, shift=2, flip=True)
    np.testing.assert_array_equal(draws2[::-1], draws)


def test_augmentation_needs_a_geometry(rng):
    X, y = _images(rng)
    with pytest.raises(ValueError, match="image_shape"):
        _fit(X.reshape(len(X), -1), y, random_shift=1)
    with pytest.raises(ValueError, match="image_shape"):
        _fit(X.reshape(len(X), -1), y, random_flip=True, image_shape=(5, 5))
    _fit(X.reshape(len(X), -1), y, random_flip=True, image_shape=(6, 5))


def test_image_geometry_of_3d_and_4d_input(rng):
    from fastmlp._training import image_geometry
    X, _ = _images(rng, c=3)
    assert image_geometry(X, None) == (6, 5, 3, False)
    assert image_geometry(np.moveaxis(X, -1, 1), None) == (6, 5, 3, True)
    assert image_geometry(X[..., 0], None) == (6, 5, 1, False)
    assert image_geometry(X.reshape(len(X), -1), None) is None
    assert image_geometry(X.reshape(len(X), -1), (6, 5, 3)) == (6, 5, 3, False)


def test_two_channel_images_have_their_geometry(rng):
    # Grayscale-with-alpha images: 2 was no channel count to the augmentations (it was to
    # PixelScaler), so (n, 2, 8, 8) images were taken for 2x8 images of 8 channels,
    # mirrored along their height and shifted across their channels.
    from fastmlp._training import image_geometry
    X = rng.integers(0, 256, size=(20, 8, 6, 2), dtype=np.uint8)
    assert image_geometry(X, None) == (8, 6, 2, False)
    assert image_geometry(np.moveaxis(X, -1, 1), None) == (8, 6, 2, True)
    # Where both axes could hold channels, the last one does, as for 1, 3 and 4.
    assert image_geometry(X[:, :2, :3], None) == (2, 3, 2, False)
    with pytest.raises(ValueError, match=r"looks like \(C, H, W\)"):
        image_geometry(None, (2, 8, 6))


def test_two_channel_images_first_are_augmented_as_such(rng, monkeypatch):
    from fastmlp import PixelScaler, estimator
    seen = []

    def recording(*args):
        options = train_options(*args)
        seen.append(options.image)
        return options

    train_options = estimator.train_options
    monkeypatch.setattr(estimator, "train_options", recording)
    X = rng.integers(0, 256, size=(120, 2, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=120)
    _fit(X, y, input_scaler=PixelScaler(channel_axis=1), random_shift=2, random_flip=True)
    assert seen == [(8, 8, 2, True)]


def test_random_shift_is_checked_against_the_real_image_size(rng):
    # 4x16 images of 2 channels, channels first: read as 2x4 images of 16 channels, a
    # shift of 4 was refused, and one of 15 would have been refused for the wrong reason.
    X = rng.normal(size=(60, 2, 4, 16)).astype(np.float32)
    y = rng.integers(0, 2, size=60)
    assert _fit(X, y, random_shift=4).n_iter_ == 3
    with pytest.raises(ValueError, match="which are 4x16 pixels"):
        _fit(X, y, random_shift=16)


@pytest.mark.parametrize("channels_first", [False, True])
def test_4d_images_train_with_augmentation(rng, channels_first):
    X, y = _images(rng, c=3)
    if channels_first:
        X = np.ascontiguousarray(np.moveaxis(X, -1, 1))
    one = _fit(X, y, random_shift=1, random_flip=True, n_threads=1)
    assert _same(one, _fit(X, y, random_shift=1, random_flip=True, n_threads=2))
    assert one.predict(X).shape == (len(X),)


# --- bad values name the parameter ----------------------------------------------------------

@pytest.mark.parametrize("param, value", [
    ("dropout", 1.0), ("dropout", -0.1), ("weight_decay", -1.0), ("warmup_epochs", -1),
    ("label_smoothing", 1.0), ("random_shift", -1), ("random_shift", 1.5),
    ("random_flip", "yes"), ("learning_rate", "cosine-ish"),
])
def test_bad_values_raise_invalid_parameter_error(rng, param, value):
    X, y = _images(rng)
    with pytest.raises(InvalidParameterError, match=param):
        _fit(X, y, **{param: value})


@pytest.mark.parametrize("param, value", [("label_smoothing", 1 - 1e-9),
                                          ("dropout", 1 - 1e-9), ("dropout", [0.1, 1 - 1e-9])])
def test_rates_that_are_1_in_float32_are_refused(rng, param, value):
    # 1 - 1e-9 is 1.0 in float32, where the core computes: training went on against
    # uniform targets (label smoothing) or with every unit dropped.
    X, y = _images(rng)
    with pytest.raises(ValueError, match=rf"{param}.* below 1 once rounded to float32.*"
                                         r"at most 0\.99999994"):
        _fit(X, y, **{param: value})
    assert _fit(X, y, **{param: 0.99999994 if param == "label_smoothing" else 0.5}).n_iter_


@pytest.mark.parametrize("hidden, dropout, match", [
    ((), [0.5], r"one rate per hidden layer \(0\)"),
    ((16, 8), [0.5], r"one rate per hidden layer \(2\)"),
    ((), 0.5, r"hidden_layer_sizes=\(\) has no hidden layer"),
])
def test_dropout_must_match_the_hidden_layers(rng, hidden, dropout, match):
    # A one-element sequence was broadcast to any number of hidden layers (none
    # included), and a positive rate without hidden layers was silently ignored.
    X, y = _images(rng)
    with pytest.raises(ValueError, match=match):
        _fit(X, y, hidden_layer_sizes=hidden, dropout=dropout)


def test_no_dropout_without_hidden_layers_trains(rng):
    X, y = _images(rng)
    for dropout in (0.0, []):
        assert _fit(X, y, hidden_layer_sizes=(), dropout=dropout).n_layers_ == 2


@pytest.mark.parametrize("value, match", [([0.1, 0.2, 0.3], "one rate per hidden layer"),
                                          ([0.1, 1.2], r"\[0, 1\)"),
                                          ((5, 0, 2), "image_shape")])
def test_bad_sequences_raise_value_error(rng, value, match):
    X, y = _images(rng)
    param = "image_shape" if match == "image_shape" else "dropout"
    with pytest.raises(ValueError, match=match):
        _fit(X, y, **{param: value})
