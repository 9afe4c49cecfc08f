"""fastmlp.kernels.matmul and the GEMM core behind it (csrc/kernels/gemm*).

Accuracy against a float64 NumPy product on awkward shapes and layouts; the determinism
contract of gemm.hpp (bitwise equal to the scalar fma-chain reference on the AVX2 and
AVX-512 paths, for any thread count and any row subset); the fused epilogues; bad
arguments. Every output is poisoned with NaN first, so an element never written shows.
"""

import itertools

import numpy as np
import pytest

from fastmlp import _core, kernels

ISAS = ["avx512", "avx2", "generic"]
_RANK = {"generic": 0, "avx2": 1, "avx512": 2}
FMA_ISAS = ["avx512", "avx2"]  # bitwise-exact paths
ACT = kernels.ACTIVATIONS

# (M, K, N): ones, primes, odd, tall, wide, K = 0 and 1, the training shapes, larger.
SHAPES = [
    (1, 1, 1),
    (1, 7, 1),
    (3, 0, 5),
    (7, 1, 13),
    (2, 3, 97),
    (97, 3, 2),
    (13, 17, 31),
    (15, 33, 33),
    (29, 64, 47),
    (64, 784, 256),
    (784, 64, 256),
    (64, 10, 256),
    (64, 256, 10),
    (1000, 5, 3),
    (3, 5, 1000),
    (257, 1023, 129),
]
# The scalar reference is slow: the bitwise tests use a lighter list.
# One row (a single image's prediction: the row tile) with K beyond one k block too.
EXACT_SHAPES = [s for s in SHAPES if s != (257, 1023, 129)] + [
    (131, 517, 67), (1, 784, 256), (1, 1100, 300), (1, 33, 70)]
TRANS = list(itertools.product([False, True], [False, True]))


def _skip_unless(isa):
    if _RANK[_core.detected_isa()] < _RANK[isa]:
        pytest.skip(f"this CPU lacks {isa} (has {_core.detected_isa()})")


@pytest.fixture(params=ISAS)
def isa(request):
    _skip_unless(request.param)
    with kernels._isa(request.param) as active:
        assert active == request.param
        yield active


@pytest.fixture(params=FMA_ISAS)
def fma_isa(request):
    _skip_unless(request.param)
    with kernels._isa(request.param) as active:
        yield active


def _operands(rng, m, k, n, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def _op(x, t):
    return x.T if t else x


def _check_close(c, a, b, trans_a, trans_b):
    """|C - A@B| <= 1e-5 * (|A| @ |B|): float32 accuracy of a k-term sum, elementwise."""
    a64, b64 = _op(a, trans_a).astype(np.float64), _op(b, trans_b).astype(np.float64)
    ref = a64 @ b64
    bound = 1e-5 * (np.abs(a64) @ np.abs(b64)) + 1e-30
    assert c.dtype == np.float32
    assert c.shape == ref.shape
    assert np.all(np.isfinite(c))
    err = np.abs(c - ref)
    assert np.all(err <= bound), f"max error / bound = {np.max(err / bound):.3g}"


def _core_matmul(a, b, trans_a, trans_b, n_threads, **kw):
    """The core's matmul with its test hooks (bias, activation, tile_epilogue, reference)."""
    a, trans_a = kernels._as_kernel_operand(a, trans_a)
    b, trans_b = kernels._as_kernel_operand(b, trans_b)
    return _core.testing.matmul(a, b, trans_a=trans_a, trans_b=trans_b, n_threads=n_threads,
                                **kw)


def _reference(a, b, trans_a, trans_b, **kw):
    """The scalar fma chain of gemm.hpp, single-threaded."""
    return _core_matmul(a, b, trans_a, trans_b, 1, reference=True, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64(rng, isa, shape):
    m, k, n = shape
    for trans_a, trans_b in TRANS:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        out = np.full((m, n), np.nan, dtype=np.float32)
        res = kernels.matmul(a, b, trans_a, trans_b, out=out)
        assert res is out
        _check_close(out, a, b, trans_a, trans_b)
        if k == 0:
            assert np.all(out == 0)


def test_returns_new_array(rng):
    a, b = _operands(rng, 5, 4, 3, False, False)
    c = kernels.matmul(a, b)
    assert c.shape == (5, 3) and c.dtype == np.float32 and c.flags.c_contiguous
    _check_close(c, a, b, False, False)


@pytest.mark.parametrize("m,n", [(0, 5), (5, 0), (0, 0)])
def test_empty_products(m, n):
    a = np.ones((m, 4), dtype=np.float32)
    b = np.ones((4, n), dtype=np.float32)
    assert kernels.matmul(a, b).shape == (m, n)
    out = np.empty((m, n), dtype=np.float32)
    assert kernels.matmul(a, b, out=out) is out


def test_layouts(rng, isa):
    """Fortran order, row and column slices, negative strides: all give the same product."""
    m, k, n = 37, 53, 41
    big_a = rng.standard_normal((2 * m + 3, 3 * k + 2)).astype(np.float32)
    big_b = rng.standard_normal((2 * k + 1, 2 * n + 5)).astype(np.float32)
    a_views = {
        "C": np.ascontiguousarray(big_a[:m, :k]),
        "F": np.asfortranarray(big_a[:m, :k]),
        "rows": big_a[1 : 2 * m : 2, 2 : k + 2],  # unit inner stride, ld > k: no copy
        "step": big_a[:m, : 3 * k : 3],  # inner stride 3: copied
        "neg": big_a[m - 1 :: -1, :k],
    }
    b_views = {
        "C": np.ascontiguousarray(big_b[:k, :n]),
        "F": np.asfortranarray(big_b[:k, :n]),
        "rows": big_b[: 2 * k : 2, 3 : n + 3],
        "step": big_b[:k, : 2 * n : 2],
    }
    for (na, a), (nb, b) in itertools.product(a_views.items(), b_views.items()):
        for trans_a, trans_b in TRANS:
            ao, bo = (a.T if trans_a else a), (b.T if trans_b else b)
            out = np.full((m, n), np.nan, dtype=np.float32)
            kernels.matmul(ao, bo, trans_a, trans_b, out=out)
            assert not np.isnan(out).any(), (na, nb, trans_a, trans_b)
            _check_close(out, ao, bo, trans_a, trans_b)


@pytest.mark.parametrize("shape", EXACT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bitwise_reference_any_threads(rng, fma_isa, shape):
    """AVX2 / AVX-512: each element is the reference's fma chain, for 1 and 2 threads."""
    m, k, n = shape
    for trans_a, trans_b in TRANS:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        ref = _reference(a, b, trans_a, trans_b)
        for n_threads in (1, 2, 3):
            out = np.full((m, n), np.nan, dtype=np.float32)
            kernels.matmul(a, b, trans_a, trans_b, out=out, n_threads=n_threads)
            assert np.array_equal(out.view(np.uint32), ref.view(np.uint32)), (
                f"differs from the reference: trans=({trans_a}, {trans_b}), "
                f"{n_threads} threads, {np.sum(out != ref)} elements"
            )


def test_generic_thread_invariance(rng):
    """The portable path rounds differently from the reference but not across threads."""
    with kernels._isa("generic"):
        for trans_a, trans_b in TRANS:
            a, b = _operands(rng, 97, 301, 45, trans_a, trans_b)
            one = kernels.matmul(a, b, trans_a, trans_b, n_threads=1)
            two = kernels.matmul(a, b, trans_a, trans_b, n_threads=2)
            assert np.array_equal(one, two)


def test_row_subset_invariance(rng, isa):
    """Rows computed alone equal the same rows of a bigger product, bitwise: a row's
    result depends neither on its neighbours nor on its position in a register tile."""
    m, k, n = 71, 300, 45
    for trans_a, trans_b in TRANS:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        full = kernels.matmul(a, b, trans_a, trans_b, n_threads=2)
        for r0, r1 in [(0, 1), (5, 6), (3, 20), (13, 71), (1, 70)]:
            sub = a[:, r0:r1] if trans_a else a[r0:r1]
            part = kernels.matmul(sub, b, trans_a, trans_b, n_threads=1)
            assert np.array_equal(part, full[r0:r1]), (trans_a, trans_b, r0, r1)
        # Columns likewise (a column's chain never sees the other columns).
        sub_b = b[5:29] if trans_b else b[:, 5:29]
        part = kernels.matmul(a, sub_b, trans_a, trans_b, n_threads=2)
        assert np.array_equal(part, full[:, 5:29])


@pytest.mark.parametrize("act", list(ACT))
@pytest.mark.parametrize("shape", [(64, 300, 100), (37, 29, 75), (1, 3, 1), (5, 0, 9)],
                         ids=lambda s: "x".join(map(str, s)))
def test_builtin_epilogue_bitwise(rng, fma_isa, act, shape):
    """C = act(sum + bias) fused into the product is bitwise the reference's epilogue."""
    m, k, n = shape
    for trans_a, trans_b in [(False, False), (True, False), (False, True)]:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        bias = rng.standard_normal(n).astype(np.float32)
        for with_bias in (bias, None):
            ref = _reference(a, b, trans_a, trans_b, bias=with_bias, activation=ACT[act])
            out = np.full((m, n), np.nan, dtype=np.float32)
            _core_matmul(a, b, trans_a, trans_b, 2, out=out, bias=with_bias,
                         activation=ACT[act])
            assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))
    if act == "relu" and m * n > 1:
        assert np.any(out == 0) and np.all(out >= 0)


def test_builtin_epilogue_portable(rng):
    """The portable path fuses the same epilogue (its sums differ by rounding only)."""
    m, k, n = 37, 29, 75
    a, b = _operands(rng, m, k, n, False, False)
    bias = rng.standard_normal(n).astype(np.float32)
    with kernels._isa("generic"):
        for act in ACT:
            ref = _reference(a, b, False, False, bias=bias, activation=ACT[act])
            out = np.full((m, n), np.nan, dtype=np.float32)
            _core_matmul(a, b, False, False, 2, out=out, bias=bias, activation=ACT[act])
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
            if act == "relu":
                assert np.all(out >= 0) and np.any(out == 0)


@pytest.mark.parametrize("shape", [(784, 64, 256), (13, 7, 5), (100, 600, 37), (33, 1, 70),
                                   (5, 0, 9), (300, 1100, 40)],
                         ids=lambda s: "x".join(map(str, s)))
def test_descent_epilogue(rng, isa, shape):
    """out holds W; the product's sums are its gradient: W -= lr * (s + wd * W) in place,
    bitwise the reference (which runs sgd_step) on the FMA paths, for any thread count,
    also when K needs several cache runs (300 x 1100 x 40)."""
    m, k, n = shape
    lr, wd = 0.05, 0.01
    a, b = _operands(rng, m, k, n, True, False)
    W = rng.standard_normal((m, n)).astype(np.float32)
    ref = W.copy()
    _reference(a, b, True, False, out=ref, descent=(lr, wd))
    g = _op(a, True).astype(np.float64) @ b.astype(np.float64)
    expected = W - lr * (g + wd * W)
    bound = 1e-6 * (1 + lr * (np.abs(_op(a, True)) @ np.abs(b)) + np.abs(W))
    for n_threads in (1, 2):
        out = W.copy()
        _core_matmul(a, b, True, False, n_threads, out=out, descent=(lr, wd),
                     exact_threads=True)
        assert np.all(np.abs(out - expected) <= 4 * bound)
        if isa != "generic":
            assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_descent_needs_out_and_excludes_other_epilogues(rng):
    a, b = _operands(rng, 4, 3, 5, False, False)
    with pytest.raises(ValueError, match="pass out"):
        _core_matmul(a, b, False, False, 1, descent=(0.1, 0.0))
    out = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="replaces"):
        _core_matmul(a, b, False, False, 1, out=out, descent=(0.1, 0.0),
                     activation=_core.Activation.relu)


@pytest.mark.parametrize("shape", [(64, 10, 256), (32, 10, 256), (1, 1, 1), (13, 7, 45),
                                   (5, 0, 9), (300, 1100, 40)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans_b", [True, False])
def test_relu_gate_epilogue(rng, isa, shape, trans_b):
    """out = product where the gate (a ReLU layer's outputs) is > 0, +0 elsewhere: the
    input-gradient product of training (64 x 10 x 256, B read transposed). Bitwise the
    reference (activation_backward) on the FMA paths for any thread count, also when K
    needs several cache runs; NaN in the gate closes it, NaN in the sums passes through."""
    m, k, n = shape
    a, b = _operands(rng, m, k, n, False, trans_b)
    gate = rng.standard_normal((m, n)).astype(np.float32)
    gate[rng.random((m, n)) < 0.2] = 0.0
    if m * n > 3:
        gate.flat[2] = np.nan
        gate.flat[1] = -0.0
        gate.flat[0] = np.float32(1e-40)  # subnormal, > 0: open
    bound = 1e-5 * (np.abs(a).astype(np.float64) @ np.abs(_op(b, trans_b))) + 1e-30
    if m * n > 3 and k > 0:
        a[0, 0] = np.nan  # row 0's sums are NaN
    prod = a.astype(np.float64) @ _op(b, trans_b).astype(np.float64)
    expected = np.where(gate > 0, prod, 0.0)
    ref = np.full((m, n), np.nan, dtype=np.float32)
    _reference(a, b, False, trans_b, out=ref, relu_gate=gate)
    for n_threads in (1, 2):
        out = np.full((m, n), np.nan, dtype=np.float32)
        _core_matmul(a, b, False, trans_b, n_threads, out=out, relu_gate=gate,
                     exact_threads=True)
        assert np.array_equal(np.isnan(out), np.isnan(expected))
        ok = ~np.isnan(expected)
        assert np.all(np.abs(out[ok] - expected[ok]) <= 4 * bound[ok])
        assert np.all(np.signbit(out[ok & ~(gate > 0)]) == 0)  # closed gates give +0
        if isa != "generic":
            assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_relu_gate_checks_its_arguments(rng):
    a, b = _operands(rng, 4, 3, 5, False, False)
    with pytest.raises(ValueError, match="shape"):
        _core_matmul(a, b, False, False, 1, relu_gate=np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="replaces"):
        _core_matmul(a, b, False, False, 1, relu_gate=np.ones((4, 5), np.float32),
                     activation=_core.Activation.relu)
    out = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        _core_matmul(a, b, False, False, 1, out=out, relu_gate=out)


@pytest.mark.parametrize("shape", [(784, 64, 256), (64, 10, 256), (257, 1023, 129),
                                   (300, 600, 40), (1, 1, 1), (6, 0, 3)],
                         ids=lambda s: "x".join(map(str, s)))
def test_tile_epilogue_exactly_once(rng, isa, shape):
    """The custom TileEpilogue gets every element once, with its full-K sum (the core
    raises RuntimeError on a missing, repeated or out-of-range delivery)."""
    m, k, n = shape
    for trans_a, trans_b in TRANS:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        for n_threads in (1, 2):
            out = np.full((m, n), np.nan, dtype=np.float32)
            _core_matmul(a, b, trans_a, trans_b, n_threads, out=out, tile_epilogue=True)
            plain = kernels.matmul(a, b, trans_a, trans_b, n_threads=n_threads)
            assert np.array_equal(out, plain)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 0, 5), (2, 3, 97), (97, 3, 2), (13, 17, 31),
                                   (29, 64, 47), (64, 10, 256), (64, 256, 10)],
                         ids=lambda s: "x".join(map(str, s)))
def test_partition_small_shapes(rng, isa, shape):
    """Small products split over 2-5 threads anyway (as the training loop splits them):
    shares may be empty, every element is still written once, with the same value."""
    m, k, n = shape
    for trans_a, trans_b in TRANS:
        a, b = _operands(rng, m, k, n, trans_a, trans_b)
        single = kernels.matmul(a, b, trans_a, trans_b, n_threads=1)
        for n_threads in (2, 3, 5):
            for tile_epilogue in (False, True):
                out = np.full((m, n), np.nan, dtype=np.float32)
                _core_matmul(a, b, trans_a, trans_b, n_threads, out=out, exact_threads=True,
                             tile_epilogue=tile_epilogue)
                assert np.array_equal(out, single), (trans_a, trans_b, n_threads)
        if isa != "generic":
            assert np.array_equal(single, _reference(a, b, trans_a, trans_b))


def test_tile_epilogue_long_k(rng):
    """K longer than the cache block: partial sums wait in scratch between K runs."""
    a, b = _operands(rng, 50, 2500, 70, True, False)
    out = np.full((50, 70), np.nan, dtype=np.float32)
    _core_matmul(a, b, True, False, 2, out=out, tile_epilogue=True)
    _check_close(out, a, b, True, False)
    if _core.active_isa() != "generic":
        assert np.array_equal(out, _reference(a, b, True, False))


def test_isa_helper_restores():
    before = _core.active_isa()
    with kernels._isa("generic") as active:
        assert active == "generic" == _core.active_isa()
    assert _core.active_isa() == before
    with pytest.raises(ValueError, match="isa"):
        _core.set_isa("sse9")


def test_bad_arguments():
    a = np.ones((3, 4), dtype=np.float32)
    b = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(TypeError, match=r"\ba\b.*float32"):
        kernels.matmul(a.astype(np.float64), b)
    with pytest.raises(TypeError, match=r"\bb\b.*float32"):
        kernels.matmul(a, b.astype(np.int32))
    with pytest.raises(TypeError, match=r"\ba\b.*NumPy array"):
        kernels.matmul(a.tolist(), b)
    with pytest.raises(ValueError, match=r"\ba\b.*2-dimensional"):
        kernels.matmul(np.ones(4, dtype=np.float32), b)
    with pytest.raises(ValueError, match=r"\bb\b.*2-dimensional"):
        kernels.matmul(a, np.ones((4, 5, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="inner dimensions"):
        kernels.matmul(a, b.T)
    with pytest.raises(ValueError, match="inner dimensions"):
        kernels.matmul(a, b, trans_a=True)
    with pytest.raises(ValueError, match="out"):
        kernels.matmul(a, b, out=np.empty((3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="out"):
        kernels.matmul(a, b, out=np.empty((3, 5), dtype=np.float64))
    with pytest.raises(ValueError, match="out"):
        kernels.matmul(a, b, out=np.empty((5, 3), dtype=np.float32).T)
    ro = np.empty((3, 5), dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        kernels.matmul(a, b, out=ro)
    buf = np.ones(40, dtype=np.float32)
    with pytest.raises(ValueError, match="overlap"):
        kernels.matmul(buf[:12].reshape(3, 4), b, out=buf[10:25].reshape(3, 5))
    with pytest.raises(TypeError, match="n_threads"):
        kernels.matmul(a, b, n_threads=1.5)
    with pytest.raises(ValueError, match="n_threads"):
        kernels.matmul(a, b, n_threads=0)
