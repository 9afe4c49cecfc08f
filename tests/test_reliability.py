"""Failure modes of the estimator, the kernels and the core: every bad input is a clear
Python exception, the process never dies or hangs, and a failed call leaves the model as
it was. One class of defect per section; each reproduction of the review that found
them is one case of its class.

Small problems use ``X = rng.normal(size=(300, 6))``, ``y = arange(300) % 3``.
"""

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from fastmlp import MLPImageClassifier, TrainingDivergedError, _core, kernels


def _problem(rng, n=300, d=6):
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, np.arange(n) % 3


def _fitted(rng, X=None, y=None, **params):
    if X is None:
        X, y = _problem(rng)
    params = {"hidden_layer_sizes": (5,), "max_iter": 3, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPImageClassifier(**params).fit(X, y), X, y


def _state(model):
    """Every fitted attribute, with arrays as bytes: equal states compare equal."""
    def frozen(v):
        if isinstance(v, np.ndarray):
            return (v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, (list, tuple)):
            return tuple(frozen(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, frozen(x)) for k, x in v.items()))
        if hasattr(v, "__dataclass_fields__"):
            return frozen(vars(v))
        if isinstance(v, np.random.RandomState):
            return frozen(list(v.get_state()))
        return v
    params = set(model.get_params())
    return {k: frozen(v) for k, v in vars(model).items() if k not in params}


def _run_python(code, timeout=120, env=None):
    """Run code in a fresh interpreter; a hang fails the test instead of the suite."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


# --- 1. the core checks every buffer it is handed, in prediction as in training ---------

@pytest.mark.parametrize("layer, shape", [(1, (4000, 3)), (1, (2, 3)), (0, (5, 5))])
def test_predict_refuses_layers_that_do_not_chain(rng, layer, shape):
    model, X, _ = _fitted(rng)
    model.coefs_[layer] = np.ones(shape, np.float32)
    for method in (model.predict_proba, model.predict, model.predict_log_proba):
        with pytest.raises(ValueError, match="layer|features"):
            method(X)


@pytest.mark.parametrize("what", ["intercept length", "float64 weights", "missing layer"])
def test_predict_refuses_inconsistent_parameters(rng, what):
    model, X, _ = _fitted(rng)
    if what == "intercept length":
        model.intercepts_[0] = np.ones(7, np.float32)
    elif what == "float64 weights":
        model.coefs_[1] = model.coefs_[1].astype(np.float64)
    else:
        model.intercepts_ = model.intercepts_[:1]
    with pytest.raises((ValueError, TypeError), match="intercepts|coefs|float32"):
        model.predict_proba(X)


@pytest.mark.parametrize("solver, message", [
    ("sgd", "layer 1 takes 6 inputs, but layer 0 has 5 outputs"),
    ("adam", r"state\['first_moment'\]\[1\] does not have the shape of its parameters"),
])
def test_training_refuses_layers_that_do_not_chain(rng, solver, message):
    model, X, y = _fitted(rng, hidden_layer_sizes=(5, 4), solver=solver, momentum=0.0)
    model.coefs_[1] = np.ones((6, 4), np.float32)
    before = _state(model)
    with pytest.raises(ValueError, match=message):
        model.set_params(warm_start=True).fit(X, y)
    assert _state(model) == before


# --- 2. thread counts are clamped, never handed to the runtime as they are --------------

@pytest.mark.parametrize("n_threads", [100_000, 2**31 - 1, 2**31, 2**63])
def test_huge_thread_counts_train_like_one_thread(rng, n_threads):
    one, X, y = _fitted(rng, n_threads=1)
    many, _, _ = _fitted(rng, X, y, n_threads=n_threads)
    for a, b in zip(one.coefs_, many.coefs_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.predict_proba(X), many.predict_proba(X))
    a = rng.normal(size=(70, 50)).astype(np.float32)
    np.testing.assert_array_equal(kernels.matmul(a, a.T, n_threads=n_threads),
                                  kernels.matmul(a, a.T, n_threads=1))


def test_a_team_smaller_than_asked_trains_like_one_thread():
    # OMP_THREAD_LIMIT=1 gives a team of one where two threads were asked for: that
    # thread trains all of W0 in place instead of its own columns in buffers sized for
    # half (train.cpp), in both precisions and with optimizer state.
    code = """
        import hashlib, warnings
        import numpy as np
        from fastmlp import MLPImageClassifier
        rng = np.random.default_rng(0)
        X = rng.normal(size=(300, 64)).astype(np.float32)
        y = rng.integers(0, 3, 300)
        for precision in ("float32", "bfloat16"):
            for solver in ("sgd", "adam"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # bfloat16 without hardware, max_iter
                    m = MLPImageClassifier((40,), solver=solver, max_iter=2, random_state=0,
                                           n_threads=N, precision=precision).fit(X, y)
                print(hashlib.sha256(b"".join(c.tobytes() for c in m.coefs_)).hexdigest())
    """
    limited = _run_python(code.replace("N,", "2,"), env={"OMP_THREAD_LIMIT": "1"})
    one = _run_python(code.replace("N,", "1,"))
    two = _run_python(code.replace("N,", "2,"))
    assert limited.returncode == one.returncode == two.returncode == 0, limited.stderr
    assert limited.stdout == one.stdout == two.stdout
    assert len(one.stdout.split()) == 4


def test_a_huge_omp_num_threads_is_clamped():
    proc = _run_python("""
        import numpy as np
        from fastmlp import MLPImageClassifier
        X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
        m = MLPImageClassifier(hidden_layer_sizes=(5,), max_iter=2).fit(X, np.arange(300) % 3)
        print(m.predict(X[:3]).shape)
    """, env={"OMP_NUM_THREADS": "100000", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "(3,)" in proc.stdout


# --- 2b. threads that share the cores: the training loop's barrier ----------------------

@pytest.mark.parametrize("n_threads, rounds", [(1, 100), (2, 20000), (3, 3000), (8, 1000)])
def test_the_barrier_lets_no_thread_through_early(n_threads, rounds):
    # Each round every thread writes its slot, waits, reads all slots, waits: a read of a
    # stale slot is a barrier that let a thread through before the others' writes. With
    # more threads than cores (3, 8 on two) most waits end asleep, so both ways of
    # waiting are checked; the call would hang if a wake-up were lost.
    team, stale = _core.testing.barrier_rounds(n_threads, rounds)
    assert team == n_threads
    assert stale == 0


def test_fits_sharing_the_cores_train_what_one_fit_alone_trains():
    # Two processes, each with more threads than its share of the cores, at once: the
    # barrier waits that end asleep change nothing in the results.
    code = """
        import hashlib, sys, warnings
        import numpy as np
        from fastmlp import MLPImageClassifier
        rng = np.random.default_rng(0)
        X = rng.normal(size=(3000, 100)).astype(np.float32)
        y = rng.integers(0, 4, 3000)
        for precision in ("float32", "bfloat16"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bfloat16 without hardware, max_iter
                m = MLPImageClassifier((96,), solver="sgd", batch_size=32, max_iter=3,
                                       random_state=0, n_threads=int(sys.argv[1]),
                                       precision=precision).fit(X, y)
            print(hashlib.sha256(b"".join(c.tobytes() for c in m.coefs_)).hexdigest())
    """
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    alone = subprocess.run([*cmd, "1"], capture_output=True, text=True, timeout=300)
    both = [subprocess.Popen([*cmd, "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in both]
    assert alone.returncode == 0, alone.stderr
    assert [p.returncode for p in both] == [0, 0], outs[0][1] + outs[1][1]
    assert len(alone.stdout.split()) == 2
    assert outs[0][0] == outs[1][0] == alone.stdout


# --- 3. allocation failures are MemoryError, and prediction scratch fits the work -------

_MEMORY_LIMITED = """
    import resource, numpy as np
    from fastmlp import MLPImageClassifier
    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    X = np.zeros((256, 4), np.float32)
    m = MLPImageClassifier(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0,
                           batch_size=256, random_state=0)
    limit = vm_bytes() + {extra}
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.skipif(bool(os.environ.get("FASTMLP_SANITIZERS")),
                    reason="AddressSanitizer's operator new aborts on out-of-memory instead of "
                           "throwing std::bad_alloc")
def test_a_model_too_large_for_memory_raises_memory_error():
    # 2e6 classes: 64 MB of weights, but 2 GB of logits for a batch of 256.
    proc = _run_python(_MEMORY_LIMITED.format(extra=800 * 2**20) + """
    try:
        m.partial_fit(X, np.arange(256), classes=np.arange(2_000_000))
    except MemoryError:
        print("MemoryError")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "MemoryError" in proc.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_predicting_a_few_rows_needs_memory_for_a_few_rows():
    # 10 rows of a 1e6-class model: the scratch is 10 x 1e6 floats per buffer, not 256.
    proc = _run_python(_MEMORY_LIMITED.format(extra=700 * 2**20) + """
    m.partial_fit(X[:8], np.arange(8), classes=np.arange(8))
    wide = np.zeros((8, 1_000_000), np.float32)
    m.coefs_[1], m.intercepts_[1] = wide, np.zeros(1_000_000, np.float32)
    m.classes_ = np.arange(1_000_000)
    print(m.predict_proba(X[:10]).shape)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "(10, 1000000)" in proc.stdout


# --- 4. a forked child trains, with the parent's results ---------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_trains_after_the_parent_used_threads():
    proc = _run_python("""
        import hashlib, multiprocessing, warnings
        import numpy as np
        from fastmlp import MLPImageClassifier
        warnings.simplefilter("ignore")
        X = np.random.default_rng(0).normal(size=(3000, 30)).astype(np.float32)
        y = np.arange(3000) % 3
        def fit_hash(_=None):
            m = MLPImageClassifier(hidden_layer_sizes=(64,), max_iter=2, n_threads=2,
                                   random_state=0).fit(X, y)
            return hashlib.sha256(b"".join(c.tobytes() for c in m.coefs_)).hexdigest()
        parent = fit_hash()
        with multiprocessing.get_context("fork").Pool(1) as pool:
            child = pool.map(fit_hash, [0])[0]
        print(parent == child)
    """, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


# --- 5. an interrupt keeps weights, step count and totals together ----------------------

def test_ctrl_c_as_a_chunk_returns_keeps_adam_in_step(rng, monkeypatch):
    X, y = _problem(rng, n=2000)
    real = _core.train_batches
    applied = {"batches": 0, "samples": 0, "calls": 0}

    def interrupted_after_third_chunk(**kwargs):
        res = real(**kwargs)
        applied["batches"] += res.n_batches
        applied["samples"] += res.n_samples
        applied["calls"] += 1
        if applied["calls"] == 3:
            raise KeyboardInterrupt  # lands as the call returns, before Python runs on
        return res

    monkeypatch.setattr(_core, "train_batches", interrupted_after_third_chunk)
    from fastmlp import _training  # chunks are never resized: one chunk is one epoch
    monkeypatch.setattr(_training, "CHUNK_SECONDS", 1e9)
    model = MLPImageClassifier(hidden_layer_sizes=(8,), batch_size=10, max_iter=3,
                               random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        model.fit(X, y)  # 2000 rows: one chunk per epoch, so the third epoch is cut short
    assert model._optimizer_state.t == applied["batches"] == 600
    assert model.t_ == applied["samples"] == 6000
    assert model.n_iter_ == 2  # the interrupted epoch trained, but was not completed


# --- 6, 7. a failed fit leaves the model as it was ---------------------------------------

def test_a_diverging_fit_with_a_callback_leaves_the_model_unchanged(rng):
    model, X, y = _fitted(rng)
    before = _state(model)

    def poison_after_first_epoch(est, info):
        if info["event"] == "epoch":
            est.coefs_[0][...] = np.nan

    with pytest.raises(TrainingDivergedError):
        model.set_params(warm_start=True, max_iter=5).fit(X, y, callback=poison_after_first_epoch)
    assert _state(model) == before


def test_a_diverging_first_fit_with_early_stopping_and_a_callback_leaves_it_unfitted(rng):
    X, y = _problem(rng)
    model = MLPImageClassifier(hidden_layer_sizes=(5,), early_stopping=True, max_iter=5)

    def poison(est, info):
        if info["event"] == "epoch" and info["epoch"] == 2:
            est.coefs_[0][...] = np.inf

    with pytest.raises(TrainingDivergedError):
        model.fit(X, y, callback=poison)
    with pytest.raises(NotFittedError):
        model.predict(X)


def test_a_failed_refit_leaves_the_fitted_model_usable(rng):
    model, X, y = _fitted(rng)
    before = _state(model)
    X10 = rng.normal(size=(50, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="at least 2 classes"):
        model.fit(X10, np.zeros(50))
    assert _state(model) == before
    assert model.n_features_in_ == 6
    model.predict(X)


@pytest.mark.parametrize("bad", ["one class", "nan", "labels"])
def test_a_failed_first_fit_leaves_the_model_unfitted(rng, bad):
    X, y = _problem(rng)
    if bad == "one class":
        y = np.zeros(300)
    elif bad == "nan":
        X = X.copy()
        X[5, 2] = np.nan
    else:
        y = np.arange(300).reshape(100, 3)
    model = MLPImageClassifier()
    with pytest.raises(ValueError):
        model.fit(X, y)
    assert _state(model) == {}
    with pytest.raises(NotFittedError):
        model.predict(X if bad != "nan" else np.zeros((2, 6)))


# --- 8. inputs beyond float32 are refused at prediction as at fit ------------------------

@pytest.mark.parametrize("scale", [1e300, -1e300, 1e39])
def test_values_beyond_float32_are_refused_as_by_fit(rng, scale):
    model, X, y = _fitted(rng)
    big = X.astype(np.float64)
    big[0, 0] = scale
    with pytest.raises(ValueError, match="too large"), np.errstate(over="ignore"):
        model.fit(big, y)
    for method in (model.predict, model.predict_proba, model.predict_log_proba):
        with pytest.raises(ValueError, match="too large"):
            method(big)
    with pytest.raises(ValueError, match="too large"):
        model.score(big, y)


# --- 13. kernels refuse aliasing and invalid hyperparameters -----------------------------

def test_activation_out_may_be_the_input_but_not_overlap_it(rng):
    x = rng.normal(size=(6, 5)).astype(np.float32)
    expect = np.maximum(x, 0)
    buf = np.concatenate([x, np.zeros((1, 5), np.float32)])
    with pytest.raises(ValueError, match="overlap"):
        kernels.activation(buf[:-1], "relu", out=buf[1:])
    with pytest.raises(ValueError, match="overlap"):
        kernels.activation_backward(buf[:-1], buf[1:], "relu", grad_in=buf[1:])
    kernels.activation(x, "relu", out=x)
    np.testing.assert_array_equal(x, expect)


def test_softmax_gradient_may_overwrite_the_logits_but_not_overlap_them(rng):
    z = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0])
    loss, grad = kernels.softmax_cross_entropy(z.copy(), y)
    buf = np.concatenate([z, np.zeros((1, 4), np.float32)])
    with pytest.raises(ValueError, match="overlap"):
        kernels.softmax_cross_entropy(buf[:-1], y, out=buf[1:])
    in_place = z.copy()
    assert kernels.softmax_cross_entropy(in_place, y, out=in_place)[0] == loss
    np.testing.assert_array_equal(in_place, grad)


def test_optimizer_steps_refuse_shared_state_and_bad_hyperparameters(rng):
    p, g = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    m = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        kernels.adam_step(p, g, m, m, 1, 1e-3)
    with pytest.raises(ValueError, match="overlap"):
        kernels.adam_step(p, g, p, np.zeros(8, np.float32), 1, 1e-3)
    with pytest.raises(ValueError, match="overlap"):
        kernels.sgd_step(p, g, 0.1, velocity=p, momentum=0.9)
    before = p.copy()
    for bad in (dict(beta_1=1.0), dict(beta_2=1.0), dict(beta_1=-0.1), dict(epsilon=np.nan)):
        with pytest.raises(ValueError, match="beta|epsilon"):
            kernels.adam_step(p, g, np.zeros(8, np.float32), np.zeros(8, np.float32), 1,
                              1e-3, **bad)
    with pytest.raises(ValueError, match="learning_rate"):
        kernels.adam_step(p, g, np.zeros(8, np.float32), np.zeros(8, np.float32), 1, np.inf)
    np.testing.assert_array_equal(p, before)


def test_a_fit_after_a_failed_fit_is_a_first_fit(rng):
    # A refit from scratch after a failed one gives the very same model as a first fit.
    model, X, y = _fitted(rng)
    with pytest.raises(ValueError):
        model.fit(X[:, :4], np.zeros(300))
    refit, _, _ = _fitted(rng, X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    digest = [hashlib.sha256(c.tobytes()).hexdigest() for c in model.coefs_]
    assert digest == [hashlib.sha256(c.tobytes()).hexdigest() for c in refit.coefs_]


class _FixedChunks:
    """A ChunkSizer whose chunks are `batches` batches long, whatever the timing."""

    batches = 1

    def __init__(self, batch_size):
        self.samples = batch_size * self.batches

    def start(self):
        pass

    def done(self, n_samples):
        pass


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_how_an_epoch_is_cut_into_chunks_changes_no_bit(rng, monkeypatch, solver):
    """The Python side cuts epochs into calls of about 0.25 s, so by timing: the loss
    curve, like the weights, must not depend on where the cuts fall."""
    import fastmlp.estimator as est

    X = rng.normal(size=(900, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=900)
    w = rng.uniform(0.1, 3.0, size=900)  # weights that do not sum exactly in any order

    def fitted(batches):
        monkeypatch.setattr(_FixedChunks, "batches", batches)
        monkeypatch.setattr(est, "ChunkSizer", _FixedChunks)
        return MLPImageClassifier(hidden_layer_sizes=(16,), solver=solver, batch_size=32,
                                  max_iter=3, alpha=1e-3, random_state=0).fit(X, y, w)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole, ones, sevens = fitted(1000), fitted(1), fitted(7)
    for other in (ones, sevens):
        assert other.loss_curve_ == whole.loss_curve_
        for a, b in zip(other.coefs_, whole.coefs_):
            assert np.array_equal(a, b)


def _snapshot(model):
    return [a.copy() for a in model.coefs_ + model.intercepts_], list(model.loss_curve_)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("request_no", [1, 2, 5, 40])
def test_running_out_of_memory_in_training_raises_memory_error(rng, n_threads, request_no):
    """A GEMM packing buffer that cannot be had, at the request_no-th request (the first
    batch's forward, its backward, a later batch's update, ...): MemoryError, the model as
    it was, and the next fit as if nothing happened."""
    X = rng.normal(size=(400, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=400)
    params = dict(hidden_layer_sizes=(24,), batch_size=32, max_iter=2, random_state=0,
                  n_threads=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPImageClassifier(**params).fit(X, y)
        before = _snapshot(model)
        _core.testing.fail_workspace_request(request_no)
        try:
            with pytest.raises(MemoryError):
                model.fit(X, y)
        finally:
            _core.testing.fail_workspace_request(0)
        after = _snapshot(model)
        assert after[1] == before[1]
        assert all(np.array_equal(a, b) for a, b in zip(after[0], before[0]))
        again = _snapshot(model.fit(X, y))
    assert all(np.array_equal(a, b) for a, b in zip(again[0], before[0]))


def test_running_out_of_memory_in_prediction_raises_memory_error(rng):
    X = rng.normal(size=(3000, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPImageClassifier(hidden_layer_sizes=(24,), max_iter=1, n_threads=2,
                                   random_state=0).fit(X, y)
    expected = model.predict_proba(X)
    _core.testing.fail_workspace_request(2)
    try:
        with pytest.raises(MemoryError):
            model.predict_proba(X)
    finally:
        _core.testing.fail_workspace_request(0)
    assert np.array_equal(model.predict_proba(X), expected)


# --- 14. parameters and models changed by hand are checked as fit checks them -----------

@pytest.mark.parametrize("params", [{"batch_size": 0}, {"activation": "bogus"},
                                    {"random_shift": -3}, {"learning_rate_init": -1.0}])
def test_partial_fit_checks_parameters_set_after_the_first_call(rng, params):
    X, y = _problem(rng)
    model = MLPImageClassifier(hidden_layer_sizes=(5,), random_state=0)
    model.partial_fit(X, y, classes=[0, 1, 2])
    before = _state(model)
    model.set_params(**params)
    with pytest.raises(ValueError, match=f"'{next(iter(params))}' parameter"):
        model.partial_fit(X, y)
    assert _state(model) == before


@pytest.mark.parametrize("params, message", [
    # Not (3, 2, 2): that may as well be 3x2 images of 2 channels (gray and alpha).
    ({"image_shape": (3, 2, 5), "random_flip": True}, r"looks like \(C, H, W\)"),
    ({"image_shape": (2.5, 2.4), "random_flip": True}, "positive integers"),
    ({"image_shape": (2, True, 3), "random_flip": True}, "positive integers"),
    ({"image_shape": (2, 3), "random_shift": 3}, "smaller than the images"),
    ({"dropout": {}}, "dropout must be a float or one rate per hidden layer"),
    ({"dropout": "half"}, "'dropout' parameter"),
    ({"hidden_layer_sizes": True}, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": (2**31,)}, "hidden_layer_sizes must contain positive integers"),
])
def test_parameters_fit_cannot_honour_are_refused(rng, params, message):
    X, y = _problem(rng)
    with pytest.raises(ValueError, match=message):
        MLPImageClassifier(**{"hidden_layer_sizes": (5,), "max_iter": 1, **params}).fit(X, y)


def test_a_last_layer_without_a_unit_per_class_is_refused(rng):
    model, X, _ = _fitted(rng)
    model.coefs_[-1] = np.ones((5, 4), np.float32)
    model.intercepts_[-1] = np.ones(4, np.float32)
    for method in (model.predict_proba, model.predict, model.predict_log_proba):
        with pytest.raises(ValueError, match="last layer has 4 units for its 3 classes_"):
            method(X)


@pytest.mark.parametrize("value", [np.inf, np.nan, 1e38])
def test_weights_that_overflow_are_refused_not_predicted(rng, value):
    model, X, _ = _fitted(rng)
    model.coefs_[0][:] = value
    for method in (model.predict_proba, model.predict, model.predict_log_proba):
        with pytest.raises(ValueError, match="outputs overflow float32"):
            method(X)
