"""The bfloat16 GEMM core (csrc/kernels/bf16.*, gemm_bf16*).

- Rounding: the scalar to_bf16 against a NumPy definition of round-to-nearest-even and,
  where the CPU has AVX512-BF16, against the conversion instruction, bitwise.
- One step of the chain: the emulated fused multiply-add against vdpbf16ps, bitwise.
- Products: the scalar emulation against float64 sums of the rounded operands; the
  AVX512-BF16 kernel bitwise equal to the emulation for every layout, shape, epilogue and
  thread count; the AMX kernel within a tight bound of it and bitwise reproducible across
  thread counts. Every output is poisoned with NaN first, and the padding the kernels may
  read holds NaN (the hook fills it so).

A kernel the CPU lacks is skipped with the reason; where the hardware kernels exist (the
AMX test machine has both), nothing is skipped.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import _core

T = _core.testing
KERNELS = ["amx", "avx512bf16", "reference"]
_RANK = {"reference": 0, "avx512bf16": 1, "amx": 2}

# (M, K, N): ones, odd, primes, the training shapes (forward, weight gradient, input
# gradient, output layer), K past one AMX step and not a multiple of it, larger.
SHAPES = [(1, 1, 1), (1, 7, 1), (7, 1, 13), (2, 3, 97), (97, 3, 2), (13, 17, 31),
          (33, 33, 33), (64, 784, 256), (784, 64, 256), (64, 10, 256), (64, 256, 10),
          (129, 65, 130), (200, 300, 40), (1, 784, 256), (1, 65, 100), (1, 30, 33)]
TRANS = list(itertools.product([False, True], [False, True]))


def _skip_unless(kernel):
    best = _core.detected_bf16_kernel()
    if _RANK[best] < _RANK[kernel]:
        pytest.skip(f"this CPU lacks the {kernel} kernel (best: {best})")


@pytest.fixture(params=["amx", "avx512bf16"])
def hw_kernel(request):
    _skip_unless(request.param)
    return request.param


def _bf16_bits_numpy(x):
    """Round-to-nearest-even float32 -> bfloat16 bits, the definition in bf16.hpp, written
    independently in NumPy (uint64 arithmetic, no overflow)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    mag = u & 0x7FFFFFFF
    nearest = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    out = np.where(mag < 0x00800000, (u >> 16) & 0x8000,
                   np.where(mag > 0x7F800000, ((u >> 16) | 0x40) & 0xFFFF, nearest))
    return out.astype(np.uint16)


def _from_bits(h):
    return (np.asarray(h, np.uint32) << 16).view(np.float32)


def _rounded(x):
    return _from_bits(_bf16_bits_numpy(x)).reshape(x.shape).astype(np.float64)


def _special_floats(rng, n):
    with np.errstate(over="ignore"):
        return _special_floats_unchecked(rng, n)


def _special_floats_unchecked(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    x *= np.float32(2.0) ** rng.integers(-140, 128, n).astype(np.float32)
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    ties = (rng.integers(0, 2**16, n, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    edge = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1.1754942e-38,
                     1.17549435e-38, 3.4028235e38, -3.4028235e38, 3.3961776e38, 1.0, -1.0],
                    np.float32)
    return np.concatenate([x, bits, ties, edge])


def test_rounding_matches_definition(rng):
    x = _special_floats(rng, 20000)
    assert np.array_equal(T.bf16_round(x), _bf16_bits_numpy(x))


def test_rounding_matches_hardware(rng):
    _skip_unless("avx512bf16")
    x = _special_floats(rng, 20000)
    assert np.array_equal(T.bf16_round(x), T.bf16_round(x, hardware=True))


def test_dot_pair_emulation_matches_instruction(rng):
    _skip_unless("avx512bf16")
    n = 100000
    normal = T.bf16_round(rng.standard_normal(4 * n).astype(np.float32)).reshape(2, n, 2)
    anything = rng.integers(0, 2**16, (2, n, 2), dtype=np.uint16)  # denormals, NaN, inf
    s = np.concatenate([rng.standard_normal(n // 2).astype(np.float32),
                        _special_floats(rng, n)[: n - n // 2]])
    for a, b in (normal, anything):
        emulated = T.bf16_dot_pairs(a, b, s)
        hardware = T.bf16_dot_pairs(a, b, s, hardware=True)
        same = (emulated.view(np.uint32) == hardware.view(np.uint32)) | (
            np.isnan(emulated) & np.isnan(hardware))
        assert same.all(), f"{(~same).sum()} of {n} steps differ"


@pytest.mark.parametrize("layout", ["rows", "transposed", "pairs", "pairs_transposed"])
@pytest.mark.parametrize("shape, r0, r1", [((1, 1), 0, 1), ((5, 3), 1, 4), ((64, 784), 0, 64),
                                           ((64, 784), 32, 64), ((37, 45), 3, 36),
                                           ((33, 17), 0, 33), ((16, 16), 0, 16),
                                           ((48, 96), 16, 48), ((50, 70), 2, 49),
                                           ((512, 512), 128, 384)])
def test_packers_match_the_scalar_loops(rng, layout, shape, r0, r1):
    """The core's packers (the vector ones where the CPU has AVX512-BF16) write exactly
    the bfloat16 the scalar loops write, and nothing outside rows [r0, r1)."""
    x = rng.choice(_special_floats(rng, shape[0] * shape[1]), shape)  # NaN, inf, denormals
    ld = {"rows": -(-shape[1] // 32) * 32 + 3, "transposed": shape[0] + 5,
          "pairs": shape[1] + 7, "pairs_transposed": shape[0] + 9}[layout]
    size = {"transposed": shape[1] * ld, "pairs_transposed": (-(-shape[1] // 32) * 32) * ld
            }.get(layout, (shape[0] + 1) * ld * 2) + 64
    kw = dict(r0=r0, r1=r1, ld=ld, size=size)
    got = T.bf16_pack(x, layout, **kw)
    want = T.bf16_pack(x, layout, scalar=True, **kw)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("shape, r0, r1, kp", [
    ((256, 10), 0, 14, 32), ((256, 10), 14, 28, 32), ((256, 10), 252, 256, 32),  # W1's tiles
    ((256, 10), 0, 256, 10), ((256, 10), 3, 250, 11), ((40, 45), 0, 40, 64),
    ((33, 70), 5, 33, 71), ((17, 1), 0, 17, 1), ((64, 33), 16, 47, 33), ((9, 96), 0, 9, 96)])
def test_transposed_pairs_take_any_block_and_padding(rng, shape, r0, r1, kp):
    """Wᵀ's pairs as training packs them, block by block of the update's row tiles and
    padded to the layer's kout (even or odd, a multiple of 32 or not): the vector packer
    writes exactly what the scalar loop writes, and nothing outside rows [r0, r1)."""
    x = rng.choice(_special_floats(rng, shape[0] * shape[1]), shape)
    ld = shape[0] + 3
    kw = dict(r0=r0, r1=r1, ld=ld, size=(kp + 1) // 2 * 2 * ld + 64, kp=kp)
    got = T.bf16_pack(x, "pairs_transposed", **kw)
    want = T.bf16_pack(x, "pairs_transposed", scalar=True, **kw)
    assert np.array_equal(got, want)


def test_pack_refuses_padding_narrower_than_the_columns(rng):
    x = rng.standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="kp must be >= cols"):
        T.bf16_pack(x, "pairs_transposed", r0=0, r1=4, ld=8, size=200, kp=9)


@pytest.mark.parametrize("h, n", [(1, 1), (2, 32), (14, 32), (13, 17), (14, 10), (3, 47),
                                  (28, 128)])
def test_fused_sgd_step_and_repack_is_the_step_then_the_pairs(rng, h, n):
    """The bfloat16 update's epilogue for plain SGD, on one register tile of h rows: W
    becomes W - lr * (s + l2 * W) (float32 operations in that order), and each pair of
    rows of the new W its bfloat16 pair row, zero partners past an odd h, nothing written
    past 2n. The core's (vector where the CPU has AVX512-BF16) and the scalar loop agree
    bitwise, special values included."""
    W0 = rng.choice(_special_floats(rng, 4 * h * n), (h, n))
    s = rng.choice(_special_floats(rng, 4 * h * n), (h, n))
    lr, l2 = np.float32(0.0123), np.float32(3e-4)
    with np.errstate(all="ignore"):
        want_w = W0 - lr * (s + l2 * W0)
    bits = T.bf16_round(want_w.ravel()).reshape(h, n)
    want_wp = np.full(((h + 1) // 2, 2 * n + 6), 0xFFFF, np.uint16)
    want_wp[:, 1:2 * n:2] = 0
    want_wp[:, 0:2 * n:2] = bits[0::2]
    want_wp[: h // 2, 1:2 * n:2] = bits[1::2]
    for scalar in (True, False):
        W = W0.copy()
        wp = T.bf16_sgd_step_pack(W, s, lr=lr, l2=l2, scalar=scalar)
        np.testing.assert_array_equal(W.view(np.uint32), want_w.view(np.uint32))
        np.testing.assert_array_equal(wp, want_wp)


def _operands(rng, m, k, n, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def _product(a, b, trans_a, trans_b, kernel, n_threads=0, **kw):
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    out = kw.pop("out", None)
    if out is None:
        out = np.full((m, n), np.nan, np.float32)
    return T.bf16_matmul(a, b, trans_a=trans_a, trans_b=trans_b, kernel=kernel,
                         n_threads=n_threads, out=out, **kw)


def _exact(a, b, trans_a, trans_b):
    """The float64 product of the bfloat16-rounded operands, and its |A|·|B| scale."""
    a64, b64 = _rounded(a), _rounded(b)
    a64, b64 = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    return a64 @ b64, np.abs(a64) @ np.abs(b64)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", TRANS, ids=lambda t: "TN"[t[0]] + "TN"[t[1]])
def test_reference_matches_float64(rng, shape, trans):
    m, k, n = shape
    a, b = _operands(rng, m, k, n, *trans)
    c = _product(a, b, *trans, "reference")
    exact, scale = _exact(a, b, *trans)
    # float32 sums of exact products: at most k roundings of 2^-24 relative to |A|·|B|.
    bound = (k + 1) * 2.0**-24 * scale + 1e-30
    assert np.all(np.abs(c - exact) <= bound)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", TRANS, ids=lambda t: "TN"[t[0]] + "TN"[t[1]])
def test_hardware_kernels(rng, hw_kernel, shape, trans):
    """AVX512-BF16 is the emulated chain bit for bit; AMX is within the chain's own error
    bound of the float64 product. Both are the same for 1, 2 and 3 threads."""
    m, k, n = shape
    a, b = _operands(rng, m, k, n, *trans)
    ref = _product(a, b, *trans, "reference")
    got = _product(a, b, *trans, hw_kernel, n_threads=1)
    if hw_kernel == "avx512bf16":
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    else:
        exact, scale = _exact(a, b, *trans)
        assert np.all(np.isfinite(got))
        assert np.all(np.abs(got - exact) <= (k + 1) * 2.0**-24 * scale + 1e-30)
    for nt in (2, 3):
        again = _product(a, b, *trans, hw_kernel, n_threads=nt)
        assert np.array_equal(again.view(np.uint32), got.view(np.uint32))


@pytest.mark.parametrize("shape", [(64, 784, 256), (13, 17, 31), (1, 5, 70)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kernel", KERNELS)
def test_epilogues(rng, kernel, shape):
    """Bias + ReLU, the SGD descent step, the ReLU gate and a custom epilogue that counts
    deliveries: each the same as applying it to the kernel's plain product."""
    _skip_unless(kernel)
    m, k, n = shape
    a, b = _operands(rng, m, k, n, False, False)
    plain = _product(a, b, False, False, kernel, n_threads=2)
    bias = rng.standard_normal(n).astype(np.float32)
    relu = _product(a, b, False, False, kernel, n_threads=2, bias=bias,
                    activation=_core.Activation.relu)
    assert np.array_equal(relu, np.maximum(plain + bias, 0))
    W = rng.standard_normal((m, n)).astype(np.float32)
    stepped = _product(a, b, False, False, kernel, n_threads=2, out=W.copy(),
                       descent=(0.1, 0.01))
    lr, wd = np.float32(0.1), np.float32(0.01)
    assert np.array_equal(stepped, W - lr * (plain + wd * W))
    gate = np.where(rng.random((m, n)) < 0.5, 0.0, 1.0).astype(np.float32)
    gated = _product(a, b, False, False, kernel, n_threads=2, relu_gate=gate)
    assert np.array_equal(gated, np.where(gate > 0, plain, np.float32(0)))
    counted = _product(a, b, False, False, kernel, n_threads=3, tile_epilogue=True)
    assert np.array_equal(counted, plain)


def test_kernel_names_and_choice():
    assert _core.detected_bf16_kernel() in KERNELS
    assert _core.active_bf16_kernel() in KERNELS
    with pytest.raises(ValueError, match="kernel must be"):
        _core.set_bf16_kernel("sse9")
    with pytest.raises(ValueError, match="kernel must be"):
        T.bf16_matmul(np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), kernel="x")


@pytest.mark.parametrize("lowered", ["reference", "avx512bf16"])
def test_environment_lowers_the_choice(lowered):
    code = "import fastmlp._core as c; print(c.active_bf16_kernel())"
    env = dict(os.environ, FASTMLP_BF16_KERNEL=lowered)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    best = _core.detected_bf16_kernel()
    assert out == (lowered if _RANK[lowered] <= _RANK[best] else best)
