"""The non-GEMM kernels of fastmlp.kernels against float64 NumPy references.

Covered: element-wise activations (forward and backward through the output), the fused
softmax cross-entropy (loss, gradient, finite differences, extreme logits, bad labels) and
the in-place optimizer steps (SGD with momentum / Nesterov / weight decay, Adam). Every
destination is poisoned with NaN first so a skipped element shows up; every random draw
comes from the ``rng`` fixture, whose seed conftest.py prints for replay.
"""

import threading

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit, logsumexp

from fastmlp import _core
from fastmlp.kernels import (
    activation,
    activation_backward,
    adam_step,
    relu,
    relu_backward,
    sgd_step,
    softmax_cross_entropy,
)

KINDS = ["identity", "relu", "logistic", "tanh"]

# Shapes for the element-wise kernels: degenerate, odd, 1-D, 3-D and one large matrix.
SHAPES = [(1, 1), (1,), (7, 13), (64, 1), (1, 97), (3, 5, 11), (2, 1, 3, 4), (513, 1031)]


def _randn(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _nan_like(x):
    return np.full(x.shape, np.nan, dtype=np.float32)


def _forward_ref(x, kind):
    """f(x) in float64."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "identity":
        return x.copy()
    if kind == "relu":
        return np.maximum(x, 0.0)  # np.maximum propagates NaN, as the kernel promises
    if kind == "logistic":
        return expit(x)
    return np.tanh(x)


def _backward_ref(g, y, kind):
    """grad_out * f'(z) in float64, with f' written through the output y = f(z)."""
    g = np.asarray(g, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if kind == "identity":
        return g.copy()
    if kind == "relu":
        return np.where(y > 0, g, 0.0)
    if kind == "logistic":
        return g * y * (1.0 - y)
    return g * (1.0 - y * y)


def _assert_forward(res, x, kind):
    assert res.dtype == np.float32
    assert res.shape == x.shape
    ref = _forward_ref(x, kind)
    if kind in ("identity", "relu"):
        assert_array_equal(res, ref.astype(np.float32))
    else:
        assert_allclose(res, ref, rtol=1e-6, atol=1e-7)


def _assert_backward(res, g, y, kind):
    assert res.dtype == np.float32
    assert res.shape == g.shape
    ref = _backward_ref(g, y, kind)
    if kind in ("identity", "relu"):
        assert_array_equal(res, ref.astype(np.float32))
    else:
        # y (1 - y) and 1 - y^2 are each a few float32 roundings of a value <= 1.
        assert_allclose(res, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(g), initial=0.0))


def _ce_ref(z, y):
    """Mean softmax cross-entropy and its gradient in float64 (log-sum-exp with max shift)."""
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[0]
    lse = logsumexp(z, axis=1)
    loss = np.mean(lse - z[np.arange(n), y])
    grad = np.exp(z - lse[:, None])
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n


def _assert_ce(loss, grad, z, y):
    ref_loss, ref_grad = _ce_ref(z, y)
    n = z.shape[0]
    assert isinstance(loss, float)
    assert grad.dtype == np.float32 and grad.shape == z.shape
    assert np.all(np.isfinite(grad))
    assert_allclose(loss, ref_loss, rtol=1e-6, atol=1e-6)
    # softmax entries are a few float32 roundings off; the label's p - 1 loses at most
    # an ulp of 1 to cancellation.
    assert_allclose(grad, ref_grad, rtol=1e-5, atol=2e-7 / n)


# --- activations -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_matches_float64(rng, kind, shape):
    x = _randn(rng, shape, scale=3.0)
    x_before = x.copy()
    _assert_forward(activation(x, kind), x, kind)
    assert_array_equal(x, x_before)  # the input is read only

    out = _nan_like(x)
    res = activation(x, kind, out=out)
    assert res is out
    assert not np.any(np.isnan(out))
    _assert_forward(out, x, kind)

    xi = x.copy()
    res = activation(xi, kind, out=xi)  # in place
    assert res is xi
    _assert_forward(xi, x, kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_backward_matches_float64(rng, kind, shape):
    y = activation(_randn(rng, shape, scale=3.0), kind)
    g = _randn(rng, shape)
    g_before, y_before = g.copy(), y.copy()
    _assert_backward(activation_backward(g, y, kind), g, y, kind)
    assert_array_equal(g, g_before)
    assert_array_equal(y, y_before)

    grad_in = _nan_like(g)
    res = activation_backward(g, y, kind, grad_in=grad_in)
    assert res is grad_in
    assert not np.any(np.isnan(grad_in))
    _assert_backward(grad_in, g, y, kind)

    gi = g.copy()
    res = activation_backward(gi, y, kind, grad_in=gi)  # in place on the gradient
    assert res is gi
    _assert_backward(gi, g, y, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_activation_strided_and_fortran_inputs(rng, kind):
    base = _randn(rng, (41, 67), scale=3.0)
    views = {
        "rows": base[::3],
        "cols": base[:, 1::2],
        "row-padded": base[:, :50],
        "reversed": base[::-1, ::-1],
        "fortran": np.asfortranarray(base),
        "transposed": base.T,
        "3d-transposed": base[:40].reshape(4, 10, 67).transpose(2, 0, 1),
    }
    for name, x in views.items():
        assert not x.flags.c_contiguous, name
        out = _nan_like(x)
        activation(x, kind, out=out)
        _assert_forward(out, x, kind)
        _assert_forward(activation(x, kind), x, kind)
        y = activation(np.ascontiguousarray(x), kind)
        g = _randn(rng, x.shape + (2,))[..., 1]  # a gradient with a strided last axis
        # the output of the forward pass given in a non-C layout too
        for y_in in (y, np.asfortranarray(y)):
            grad_in = _nan_like(g)
            activation_backward(g, y_in, kind, grad_in=grad_in)
            _assert_backward(grad_in, g, y, kind)


def test_relu_wrappers_and_nan(rng):
    x = _randn(rng, (9, 17))
    x[0, 0], x[3, 5], x[8, 16] = np.nan, -np.inf, np.inf
    x[4, 4] = np.float32(np.nan) * -1  # NaN whatever its sign bit
    out = relu(x)
    nan = np.isnan(x)
    assert_array_equal(np.isnan(out), nan)  # NaN propagates instead of becoming 0
    assert out[3, 5] == 0.0 and out[8, 16] == np.inf
    assert_array_equal(out[~nan], np.maximum(x[~nan], 0.0))
    assert_array_equal(relu(x, out=_nan_like(x)), out)

    g = _randn(rng, x.shape)
    gi = relu_backward(g, out)
    assert_array_equal(gi, np.where(out > 0, g, 0.0).astype(np.float32))
    assert not np.any(np.isnan(gi))  # NaN outputs are not > 0: no gradient through them
    grad_in = _nan_like(g)
    assert relu_backward(g, out, grad_in=grad_in) is grad_in
    assert_array_equal(grad_in, gi)


@pytest.mark.parametrize("kind", ["logistic", "tanh"])
def test_saturating_activations_at_extremes(kind):
    x = np.array(
        [-1e4, -100.0, -88.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 88.0, 100.0, 1e4], dtype=np.float32
    )
    y = activation(x, kind)  # filterwarnings=error turns any overflow warning into a failure
    assert np.all(np.isfinite(y))
    assert np.all(np.diff(y) >= 0)  # monotone up to the exact limits
    lo = 0.0 if kind == "logistic" else -1.0
    assert y[0] == lo and y[-1] == 1.0
    assert y[-2] == 1.0  # 1 - e^-100 rounds to 1 in float32
    assert_allclose(y, _forward_ref(x, kind), rtol=1e-6, atol=1e-30)
    if kind == "logistic":
        assert 0.0 <= y[1] < 1e-40  # e^-100, subnormal or flushed, never negative
        assert y[5] == 0.5
    else:
        assert y[1] == -1.0 and y[5] == 0.0
    # the backward pass at saturation gives exact zeros, not NaN
    g = np.ones_like(x)
    d = activation_backward(g, y, kind)
    assert np.all(np.isfinite(d)) and d[0] == 0.0 and d[-1] == 0.0


def test_activation_bad_arguments(rng):
    x = _randn(rng, (4, 6))
    y = relu(x)
    with pytest.raises(ValueError, match="kind"):
        activation(x, "softplus")
    with pytest.raises(TypeError, match="x"):
        activation(x.astype(np.float64), "relu")
    with pytest.raises(TypeError, match="x"):
        activation(x.tolist(), "relu")
    with pytest.raises(TypeError, match="grad_out"):
        activation_backward(x.astype(np.float16), y, "relu")
    with pytest.raises(TypeError, match="out"):
        activation_backward(x, y.astype(np.float64), "relu")
    with pytest.raises(ValueError, match="grad_out"):
        activation_backward(x, y[:, :5].copy(), "relu")

    bad_outs = {
        "wrong shape": (np.zeros((6, 4), np.float32), ValueError),
        "float64": (np.zeros((4, 6), np.float64), TypeError),
        "read-only": (np.zeros((4, 6), np.float32), ValueError),
        "strided": (np.zeros((4, 12), np.float32)[:, ::2], ValueError),
        "fortran": (np.zeros((4, 6), np.float32, order="F"), ValueError),
        "list": ([[0.0] * 6] * 4, TypeError),
    }
    bad_outs["read-only"][0].flags.writeable = False
    for name, (out, exc) in bad_outs.items():
        before = np.array(out, copy=True)
        with pytest.raises(exc, match="out"):
            activation(x, "tanh", out=out)
        with pytest.raises(exc, match="grad_in"):
            activation_backward(x, y, "tanh", grad_in=out)
        assert_array_equal(np.asarray(out), before, err_msg=name)

    # the gradient must not be written over the forward output it reads
    y_before = y.copy()
    with pytest.raises(ValueError, match="overlap"):
        activation_backward(x, y, "relu", grad_in=y)
    assert_array_equal(y, y_before)


# --- softmax cross-entropy -----------------------------------------------------------


CE_SHAPES = [(1, 1), (1, 10), (5, 1), (7, 3), (64, 10), (33, 257), (513, 1031)]


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_softmax_cross_entropy_matches_float64(rng, shape):
    n, c = shape
    z = _randn(rng, shape, scale=4.0)
    y = rng.integers(0, c, size=n)
    z_before = z.copy()
    loss, grad = softmax_cross_entropy(z, y)
    assert_array_equal(z, z_before)
    _assert_ce(loss, grad, z, y)
    # each row of (softmax - onehot) / n sums to zero
    assert_allclose(grad.astype(np.float64).sum(axis=1), 0.0, atol=2e-7 * max(c, 4) / n)

    out = _nan_like(z)
    loss2, grad2 = softmax_cross_entropy(z, y, out=out)
    assert grad2 is out
    assert loss2 == loss
    assert_array_equal(out, grad)

    zi = z.copy()
    loss3, grad3 = softmax_cross_entropy(zi, y, out=zi)  # gradient written over the logits
    assert grad3 is zi
    assert loss3 == loss
    assert_array_equal(zi, grad)


def test_softmax_cross_entropy_one_row_one_class():
    for value in (0.0, -3.5, 1e4, -1e4):
        z = np.array([[value]], dtype=np.float32)
        loss, grad = softmax_cross_entropy(z, np.array([0]), out=_nan_like(z))
        assert loss == 0.0
        assert_array_equal(grad, np.zeros((1, 1), np.float32))


def test_softmax_cross_entropy_extreme_logits(rng):
    n, c = 12, 9
    z = (1e4 * rng.choice([-1.0, 1.0], size=(n, c))).astype(np.float32)
    z[0] = 1e4  # all tied at the top
    z[1] = -1e4  # all tied at the bottom
    z[2, :] = -1e4
    z[2, 4] = 1e4  # one winner; the label below is a loser: loss 2e4
    z[3] = rng.uniform(-1e4, 1e4, size=c).astype(np.float32)
    y = rng.integers(0, c, size=n)
    y[2] = 0
    loss, grad = softmax_cross_entropy(z, y, out=_nan_like(z))
    assert np.isfinite(loss)
    _assert_ce(loss, grad, z, y)
    assert loss >= 2e4 / n  # row 2 alone contributes 2e4 / n
    assert_allclose(grad[0], (1.0 / c - np.eye(c)[y[0]]) / n, rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_finite_differences(rng):
    """grad == d(mean loss)/d(logits), by central differences on the kernel's own loss.

    Logits are multiples of 2^-12 in [-4, 4] and the step is 2^-6, so z +- h is exact in
    float32. The loss comes back in double; its float32 exp roundings (~1e-7 on one row,
    divided by n) over 2h give ~1e-5/n of noise, and the O(h^2) truncation is below 1e-5/n
    (about 5e-6/n is seen): 3e-5/n still catches any wrong term (gradients are ~0.1/n).
    """
    n, c = 5, 7
    z = (np.round(rng.uniform(-4.0, 4.0, size=(n, c)) * 4096.0) / 4096.0).astype(np.float32)
    y = rng.integers(0, c, size=n)
    _, grad = softmax_cross_entropy(z, y)
    h = 2.0**-6
    fd = np.empty((n, c))
    for i in range(n):
        for j in range(c):
            zp, zm = z.copy(), z.copy()
            zp[i, j] += np.float32(h)
            zm[i, j] -= np.float32(h)
            assert zp[i, j] - zm[i, j] == 2 * h  # the perturbation is exact
            lp, _ = softmax_cross_entropy(zp, y)
            lm, _ = softmax_cross_entropy(zm, y)
            fd[i, j] = (lp - lm) / (2.0 * h)
    assert_allclose(grad, fd, rtol=0, atol=3e-5 / n)
    # the float64 reference agrees with the same differences
    _, ref_grad = _ce_ref(z, y)
    assert_allclose(ref_grad, fd, rtol=0, atol=3e-5 / n)


def test_softmax_cross_entropy_strided_and_fortran_logits(rng):
    base = _randn(rng, (40, 23), scale=3.0)
    views = {
        "rows": base[::3],
        "row-padded": base[:, :10],  # unit inner stride, row stride 23: read in place
        "cols": base[:, ::2],
        "reversed": base[::-1],
        "fortran": np.asfortranarray(base),
        "one-column-strided": base[::2, 5:6],
        "transposed": base[:, :17].T,
    }
    for name, z in views.items():
        y = rng.integers(0, z.shape[1], size=z.shape[0])
        loss, grad = softmax_cross_entropy(z, y, out=_nan_like(z))
        assert grad.flags.c_contiguous, name
        _assert_ce(loss, grad, z, y)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_softmax_cross_entropy_label_dtypes(rng, dtype):
    z = _randn(rng, (11, 6))
    y = rng.integers(0, 6, size=11)
    ref = softmax_cross_entropy(z, y.astype(np.int32))
    for labels in (y.astype(dtype), y.astype(dtype).tolist(), np.repeat(y.astype(dtype), 2)[::2]):
        loss, grad = softmax_cross_entropy(z, labels)
        assert loss == ref[0]
        assert_array_equal(grad, ref[1])


def test_softmax_cross_entropy_bad_arguments(rng):
    z = _randn(rng, (6, 4))
    y = np.array([0, 1, 2, 3, 0, 1])
    cases = [
        (z, np.array([0, 1, 2, 4, 0, 1]), ValueError, "labels"),  # == n_classes
        (z, np.array([0, 1, -1, 3, 0, 1]), ValueError, "labels"),
        (z, np.array([0, 1, 2, 3, 0, 2**40]), ValueError, "labels"),  # not wrapped to int32
        (z, y[:5], ValueError, "labels"),
        (z, np.concatenate([y, y]), ValueError, "labels"),
        (z, y.reshape(2, 3), ValueError, "labels"),
        (z, y.astype(np.float64), TypeError, "labels"),
        (z, y.astype(bool), TypeError, "labels"),
        (z, y.astype(str), TypeError, "labels"),
        (z.astype(np.float64), y, TypeError, "logits"),
        (z.ravel(), y, ValueError, "logits"),
        (z.tolist(), y, TypeError, "logits"),
    ]
    for logits, labels, exc, name in cases:
        with pytest.raises(exc, match=name):
            softmax_cross_entropy(logits, labels)
    bad_outs = [
        (np.zeros((4, 6), np.float32), ValueError),
        (np.zeros((6, 4), np.float64), TypeError),
        (np.zeros((6, 8), np.float32)[:, ::2], ValueError),
        (np.zeros((6, 4), np.float32, order="F"), ValueError),
    ]
    for out, exc in bad_outs:
        before = out.copy()
        with pytest.raises(exc, match="out"):
            softmax_cross_entropy(z, y, out=out)
        assert_array_equal(out, before)
    ro = np.zeros((6, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        softmax_cross_entropy(z, y, out=ro)


def test_core_checks_its_own_arguments(rng):
    """The binding rejects what the wrappers would, so the compiled core cannot be misled."""
    z = _randn(rng, (3, 4))
    y = np.array([0, 1, 3], dtype=np.int32)
    with pytest.raises(ValueError, match="labels"):
        _core.softmax_cross_entropy(z, np.array([0, 4, 1], dtype=np.int32))
    with pytest.raises(ValueError, match="labels"):
        _core.softmax_cross_entropy(z, y[:2])
    with pytest.raises(TypeError, match="labels"):
        _core.softmax_cross_entropy(z, y.astype(np.int64))
    with pytest.raises(TypeError, match="logits"):
        _core.softmax_cross_entropy(z.astype(np.float64), y)
    p, g = _randn(rng, 8), _randn(rng, 8)
    sgd = dict(lr=0.1, velocity=None, momentum=0.0, nesterov=False, l2=0.0)
    adam = _core.OptimConfig()
    adam.solver, adam.learning_rate = _core.Solver.adam, 1e-3
    with pytest.raises(TypeError, match="param"):
        _core.sgd_step(p.astype(np.float64), g, **sgd)
    with pytest.raises(ValueError, match="param"):
        _core.sgd_step(p[::2], g[:4], **sgd)
    with pytest.raises(ValueError, match="momentum"):
        _core.sgd_step(p, g, **{**sgd, "momentum": 0.9})
    with pytest.raises(ValueError, match="t must"):
        _core.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), t=0, config=adam, l2=0.0)
    with pytest.raises(TypeError, match="v"):
        _core.adam_step(p, g, np.zeros_like(p), np.zeros(8), t=1, config=adam, l2=0.0)


# --- optimizers ------------------------------------------------------------------------


def _within(actual, ref, mag, rtol, name):
    """|actual - ref| <= rtol * mag element-wise, where mag is the float64 running sum of
    the magnitudes of every term that went into ref: a bound on float32 rounding that
    stays meaningful when terms cancel (a moment near 0, a one-element array)."""
    err = np.abs(actual.astype(np.float64) - ref)
    bound = rtol * mag
    bad = err > bound
    if np.any(bad):
        worst = np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0.0))
        idx = np.unravel_index(worst, ref.shape)
        pytest.fail(
            f"{name}: {np.count_nonzero(bad)} of {ref.size} elements off; at {idx}: "
            f"got {actual[idx]!r}, expected {ref[idx]!r}, term magnitude {mag[idx]!r}"
        )


SGD_CASES = {
    "plain": dict(momentum=0.0, nesterov=False, l2=0.0, velocity=False),
    "plain-decay": dict(momentum=0.0, nesterov=False, l2=1e-2, velocity=False),
    "velocity-momentum0": dict(momentum=0.0, nesterov=False, l2=0.0, velocity=True),
    "momentum": dict(momentum=0.9, nesterov=False, l2=0.0, velocity=True),
    "nesterov": dict(momentum=0.9, nesterov=True, l2=0.0, velocity=True),
    "momentum-decay": dict(momentum=0.5, nesterov=False, l2=3e-2, velocity=True),
    "nesterov-decay": dict(momentum=0.95, nesterov=True, l2=1e-3, velocity=True),
}


@pytest.mark.parametrize("shape", [(1,), (1, 1), (257, 31), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_step_matches_formula(rng, case, shape):
    cfg = SGD_CASES[case]
    lr, mom, nest, wd = 0.05, cfg["momentum"], cfg["nesterov"], cfg["l2"]
    param = _randn(rng, shape)
    velocity = _randn(rng, shape, scale=0.1) if cfg["velocity"] else None
    p_ref = param.astype(np.float64)
    v_ref = velocity.astype(np.float64) if velocity is not None else None
    p_mag = np.abs(p_ref)
    v_mag = np.abs(v_ref) if v_ref is not None else None
    param_id, param_data = id(param), param.ctypes.data
    for _ in range(5):
        grad = _randn(rng, shape)
        ret = sgd_step(
            param, grad, lr, velocity=velocity, momentum=mom, nesterov=nest, l2=wd
        )
        assert ret is None
        # optim.hpp, term by term
        g = grad.astype(np.float64) + wd * p_ref  # g = grad + l2 * param
        g_mag = np.abs(grad) + wd * p_mag
        if v_ref is None:
            p_ref = p_ref - lr * g  # param -= lr * g
            p_mag = p_mag + lr * g_mag
        else:
            v_ref = mom * v_ref - lr * g  # v <- momentum * v - lr * g
            v_mag = mom * v_mag + lr * g_mag
            if nest:
                p_ref = p_ref + (mom * v_ref - lr * g)  # param += momentum * v - lr * g
                p_mag = p_mag + mom * v_mag + lr * g_mag
            else:
                p_ref = p_ref + v_ref  # param += v
                p_mag = p_mag + v_mag
    assert id(param) == param_id and param.ctypes.data == param_data
    assert param.dtype == np.float32 and param.shape == shape
    _within(param, p_ref, p_mag, 1e-6, "param")
    if velocity is not None:
        _within(velocity, v_ref, v_mag, 1e-6, "velocity")


def _adam_ref(state, grad, t, lr, b1, b2, eps, wd):
    """optim.hpp's Adam in float64, term by term; state is (param, m, v) and the
    magnitudes (see _within) of each."""
    p, m, v, p_mag, m_mag, v_mag = state
    g = grad + wd * p
    g_mag = np.abs(grad) + wd * p_mag
    m = b1 * m + (1.0 - b1) * g  # first moment
    m_mag = b1 * m_mag + (1.0 - b1) * g_mag
    v = b2 * v + (1.0 - b2) * g * g  # second moment
    v_mag = b2 * v_mag + (1.0 - b2) * g_mag * g_mag
    lr_t = lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    den = np.sqrt(v) + eps
    p = p - lr_t * m / den
    # an error in v of v_mag * u moves sqrt(v) by a relative v_mag / v * u / 2
    v_ratio = np.divide(v_mag, v, out=np.ones_like(v), where=v > 0)
    p_mag = p_mag + lr_t * (m_mag + np.abs(m) * v_ratio) / den
    return p, m, v, p_mag, m_mag, v_mag


ADAM_CASES = {
    "defaults": dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, l2=0.0),
    "decay": dict(lr=1e-2, beta_1=0.9, beta_2=0.999, epsilon=1e-8, l2=1e-2),
    "other-betas": dict(lr=3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-7, l2=0.0),
    "slow-second-moment": dict(
        lr=1e-3, beta_1=0.95, beta_2=0.9999, epsilon=1e-6, l2=1e-3
    ),
}


@pytest.mark.parametrize("shape", [(1,), (1, 1), (257, 31), (3, 4, 5)], ids=str)
@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_step_matches_formula(rng, case, shape):
    cfg = ADAM_CASES[case]
    param = _randn(rng, shape)
    m = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    ref = (
        param.astype(np.float64),
        np.zeros(shape),
        np.zeros(shape),
        np.abs(param.astype(np.float64)),
        np.zeros(shape),
        np.zeros(shape),
    )
    ids = [(id(a), a.ctypes.data) for a in (param, m, v)]
    for t in range(1, 7):
        grad = _randn(rng, shape, scale=0.5)
        if grad.size > 4:
            grad.flat[:3] = 0.0  # zero gradients: only weight decay moves the moments
        ret = adam_step(
            param,
            grad,
            m,
            v,
            t,
            cfg["lr"],
            cfg["beta_1"],
            cfg["beta_2"],
            cfg["epsilon"],
            l2=cfg["l2"],
        )
        assert ret is None
        ref = _adam_ref(
            ref,
            grad.astype(np.float64),
            t,
            cfg["lr"],
            cfg["beta_1"],
            cfg["beta_2"],
            cfg["epsilon"],
            cfg["l2"],
        )
        p_ref, m_ref, v_ref, p_mag, m_mag, v_mag = ref
        _within(m, m_ref, m_mag, 1e-6, f"m at t={t}")
        _within(v, v_ref, v_mag, 1e-6, f"v at t={t}")
        _within(param, p_ref, p_mag, 1e-6, f"param at t={t}")
    assert [(id(a), a.ctypes.data) for a in (param, m, v)] == ids


def test_adam_first_step_is_sign_times_lr(rng):
    """At t=1 with zero moments, bias correction makes the step lr * g / (|g| + eps')."""
    param = _randn(rng, 101)
    grad = _randn(rng, 101)
    before = param.copy()
    adam_step(param, grad, np.zeros_like(param), np.zeros_like(param), 1, 0.01, epsilon=1e-30)
    assert_allclose(param, before - 0.01 * np.sign(grad), rtol=1e-6, atol=1e-8)


def test_empty_last_axes_and_scalars_are_shapes_like_any_other():
    empty = np.empty((3, 0), np.float32)
    assert activation(empty).shape == (3, 0)
    assert relu_backward(empty, empty).shape == (3, 0)
    p = np.array(1.0, np.float32)
    sgd_step(p, np.array(1.0, np.float32), 0.5)
    assert p.shape == () and p == np.float32(0.5)


_ONES = lambda: np.ones(3, np.float32)  # noqa: E731
_ZEROS = lambda: np.zeros(3, np.float32)  # noqa: E731


@pytest.mark.parametrize("step, match", [
    (lambda p: sgd_step(p, _ONES(), float("nan")), "lr must be positive and finite"),
    (lambda p: sgd_step(p, _ONES(), 1e39), "lr must be positive and finite in float32"),
    (lambda p: sgd_step(p, _ONES(), -1.0), "lr must be positive"),
    (lambda p: sgd_step(p, _ONES(), 0.1, l2=float("nan")), "l2 must be non-negative"),
    (lambda p: sgd_step(p, _ONES(), 0.1, l2=-5.0), "l2 must be non-negative"),
    (lambda p: sgd_step(p, _ONES(), 0.1, velocity=_ZEROS(), momentum=5.0), "momentum must"),
    (lambda p: sgd_step(p, _ONES(), 0.1, velocity=_ZEROS(), momentum=-0.5), "momentum must"),
    (lambda p: adam_step(p, _ONES(), _ZEROS(), _ZEROS(), 1, 1e39), "learning_rate must be"),
    (lambda p: adam_step(p, _ZEROS(), _ZEROS(), _ZEROS(), 1, 1e-3, epsilon=0.0),
     "epsilon must be positive"),
    (lambda p: adam_step(p, _ONES(), _ZEROS(), _ZEROS(), 1, 1e-3, l2=float("nan")),
     "l2 must be non-negative"),
    (lambda p: adam_step(p, _ONES(), _ZEROS(), _ZEROS(), 1, 1e-3, l2=-5.0), "l2 must be"),
    (lambda p: adam_step(p, _ONES(), _ZEROS(), _ZEROS(), 2**70, 1e-3), r"t must be an integer"),
    (lambda p: adam_step(p, _ONES(), _ZEROS(), _ZEROS(), 1, 3e38, beta_1=0.999999),
     "overflows float32"),
])
def test_step_hyperparameters_that_would_poison_the_parameters_are_refused(step, match):
    param = _ONES()
    with pytest.raises(ValueError, match=match):
        step(param)
    np.testing.assert_array_equal(param, _ONES())  # untouched


def _snapshot(arrays):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]


def _assert_unchanged(arrays, snapshot, name):
    for a, s in zip(arrays, snapshot):
        if isinstance(a, np.ndarray):
            assert_array_equal(a, s, err_msg=f"{name}: an array was modified")


def _read_only(a):
    a.flags.writeable = False
    return a


def test_optimizer_steps_reject_bad_arrays_untouched(rng):
    shape = (6, 5)

    def fresh():
        return _randn(rng, shape), _randn(rng, shape), _randn(rng, shape), _randn(rng, shape)

    p, g, a, b = fresh()
    sgd_bad = [
        ("param float64", dict(param=p.astype(np.float64)), TypeError, "param"),
        ("param read-only", dict(param=_read_only(p.copy())), ValueError, "param"),
        ("param strided", dict(param=_randn(rng, (6, 10))[:, ::2]), ValueError, "param"),
        ("param fortran", dict(param=np.asfortranarray(p)), ValueError, "param"),
        ("param list", dict(param=p.tolist()), TypeError, "param"),
        ("grad shape", dict(grad=g[:, :4]), ValueError, "grad"),
        ("grad transposed shape", dict(grad=g.reshape(5, 6)), ValueError, "grad"),
        ("grad float64", dict(grad=g.astype(np.float64)), TypeError, "grad"),
        ("velocity float64", dict(velocity=a.astype(np.float64)), TypeError, "velocity"),
        ("velocity shape", dict(velocity=a.reshape(-1)), ValueError, "velocity"),
        ("velocity read-only", dict(velocity=_read_only(a.copy())), ValueError, "velocity"),
        ("velocity strided", dict(velocity=_randn(rng, (12, 5))[::2]), ValueError, "velocity"),
        ("no velocity", dict(velocity=None), ValueError, "velocity"),
    ]
    for name, override, exc, match in sgd_bad:
        args = dict(param=p.copy(), grad=g.copy(), velocity=a.copy())
        args.update(override)
        arrays = list(args.values())
        snap = _snapshot(arrays)
        with pytest.raises(exc, match=match):
            sgd_step(
                args["param"],
                args["grad"],
                0.1,
                velocity=args["velocity"],
                momentum=0.9,
                l2=0.1,
            )
        _assert_unchanged(arrays, snap, name)

    adam_bad = [
        ("param float64", dict(param=p.astype(np.float64)), TypeError, "param"),
        ("param read-only", dict(param=_read_only(p.copy())), ValueError, "param"),
        ("param strided", dict(param=_randn(rng, (6, 10))[:, ::2]), ValueError, "param"),
        ("grad shape", dict(grad=g[:5]), ValueError, "grad"),
        ("grad float16", dict(grad=g.astype(np.float16)), TypeError, "grad"),
        ("m float64", dict(m=a.astype(np.float64)), TypeError, "m"),
        ("m shape", dict(m=a[:, :4].copy()), ValueError, "m"),
        ("m read-only", dict(m=_read_only(a.copy())), ValueError, "m"),
        ("v strided", dict(v=_randn(rng, (6, 10))[:, 1::2]), ValueError, "v"),
        ("v shape", dict(v=b.reshape(30)), ValueError, "v"),
        ("v None", dict(v=None), TypeError, "v"),
        ("t zero", dict(t=0), ValueError, "t"),
        ("t float", dict(t=1.5), ValueError, "t"),
        ("t bool", dict(t=True), ValueError, "t"),
    ]
    for name, override, exc, match in adam_bad:
        args = dict(param=p.copy(), grad=g.copy(), m=a.copy(), v=np.abs(b), t=3)
        args.update(override)
        arrays = list(args.values())
        snap = _snapshot(arrays)
        with pytest.raises(exc, match=match):
            adam_step(
                args["param"], args["grad"], args["m"], args["v"], args["t"], 1e-3, l2=0.1
            )
        _assert_unchanged(arrays, snap, name)


def test_optimizer_steps_accept_any_grad_layout(rng):
    """grad is only read: a strided or Fortran gradient is fine and gives the same step."""
    p0, g = _randn(rng, (8, 9)), _randn(rng, (8, 18))[:, ::2]
    expect = p0.copy()
    sgd_step(expect, np.ascontiguousarray(g), 0.1, l2=0.01)
    for grad in (g, np.asfortranarray(g)):
        p = p0.copy()
        sgd_step(p, grad, 0.1, l2=0.01)
        assert_array_equal(p, expect)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    adam_step(p, np.asfortranarray(g), m, v, 1, 1e-3)
    pe, me, ve = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    adam_step(pe, np.ascontiguousarray(g), me, ve, 1, 1e-3)
    assert_array_equal(p, pe)
    assert_array_equal(m, me)
    assert_array_equal(v, ve)


# --- the GIL -----------------------------------------------------------------------------


def _run_threads(fns):
    results = [None] * len(fns)
    errors = []
    start = threading.Barrier(len(fns))

    def work(i):
        try:
            start.wait()
            results[i] = fns[i]()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(fns))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


def test_kernels_run_concurrently_in_threads(rng):
    """The kernels release the GIL; concurrent calls from threads give the sequential results."""
    n_threads = 4
    zs = [_randn(rng, (1500, 300), scale=3.0) for _ in range(n_threads)]
    ys = [rng.integers(0, 300, size=1500) for _ in range(n_threads)]
    expected = [softmax_cross_entropy(z, y) for z, y in zip(zs, ys)]
    for _ in range(2):
        got = _run_threads([lambda z=z, y=y: softmax_cross_entropy(z, y) for z, y in zip(zs, ys)])
        for (loss, grad), (eloss, egrad) in zip(got, expected):
            assert loss == eloss
            assert_array_equal(grad, egrad)

    acts = _run_threads([lambda z=z, k=k: activation(z, k) for z, k in zip(zs, KINDS)])
    for z, k, a in zip(zs, KINDS, acts):
        assert_array_equal(a, activation(z, k))

    params = [_randn(rng, 200_000) for _ in range(n_threads)]
    grads = [_randn(rng, 200_000) for _ in range(n_threads)]
    seq = [p.copy() for p in params]
    seq_m = [np.zeros_like(p) for p in params]
    seq_v = [np.zeros_like(p) for p in params]
    for p, g, m, v in zip(seq, grads, seq_m, seq_v):
        adam_step(p, g, m, v, 1, 1e-3)
    par, par_m, par_v = (
        [p.copy() for p in params],
        [np.zeros_like(p) for p in params],
        [np.zeros_like(p) for p in params],
    )
    _run_threads(
        [
            lambda i=i: adam_step(par[i], grads[i], par_m[i], par_v[i], 1, 1e-3)
            for i in range(n_threads)
        ]
    )
    for a, b in zip(par + par_m + par_v, seq + seq_m + seq_v):
        assert_array_equal(a, b)
