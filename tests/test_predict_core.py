"""The core's prediction call, _core.predict_proba (csrc/train.cpp).

- A block too small to share out by rows (one image, a few rows) is shared by the team
  column by column, layer by layer: the results are bitwise those of one thread, float32
  on each FMA ISA and bfloat16 on each kernel, for plain arrays, PixelInput and row lists.
- Results match a float64 forward pass.
- ``out=`` is written in place and checked (shape, dtype, layout, overlap with the input
  or the weights) before anything runs; outputs that overflow float32 are a ValueError
  unless ``check_outputs=False``.

Every output is poisoned with NaN first, so an element never written shows.
"""

import numpy as np
import pytest

from fastmlp import _core, kernels

RELU = _core.Activation.relu
# (layer sizes): above the core's threshold for sharing one image (784-256-10), below it
# (20-9-3), and a deeper network with widths that are not a tile's multiple.
NETS = [(784, 256, 10), (20, 9, 3), (300, 130, 67, 5)]
ROWS = [1, 2, 7, 256]
FMA_ISAS = [i for i in ("avx512", "avx2")
            if {"generic": 0, "avx2": 1, "avx512": 2}[_core.detected_isa()]
            >= {"avx2": 1, "avx512": 2}[i]]
BF16_KERNELS = ["reference"] + [
    k for k in ("avx512bf16", "amx")
    if {"reference": 0, "avx512bf16": 1, "amx": 2}[_core.detected_bf16_kernel()]
    >= {"avx512bf16": 1, "amx": 2}[k]]


def _net(rng, sizes):
    coefs = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
             for a, b in zip(sizes[:-1], sizes[1:])]
    intercepts = [rng.normal(0, 0.1, b).astype(np.float32) for b in sizes[1:]]
    return coefs, intercepts


def _predict(coefs, intercepts, X, n_threads, log=False, **kw):
    n = len(kw["rows"]) if kw.get("rows") is not None else X.shape[0]
    out = np.full((n, coefs[-1].shape[1]), np.nan, dtype=np.float32)
    got = _core.predict_proba(coefs, intercepts, X, activation=RELU, log=log,
                              n_threads=n_threads, out=out, **kw)
    assert got is out or np.shares_memory(got, out)
    return out


def _reference(coefs, intercepts, X):
    h = X.astype(np.float64)
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        h = h @ W.astype(np.float64) + b
        if i < len(coefs) - 1:
            h = np.maximum(h, 0)
    p = np.exp(h - h.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(params=FMA_ISAS or ["none"])
def fma_isa(request):
    if request.param == "none":
        pytest.skip(f"this CPU has no FMA path (has {_core.detected_isa()})")
    with kernels._isa(request.param) as active:
        yield active


@pytest.fixture(params=BF16_KERNELS)
def bf16_kernel(request):
    before = _core.active_bf16_kernel()
    _core.set_bf16_kernel(request.param)
    yield request.param
    _core.set_bf16_kernel(before)


def test_bf16_kernels_that_cannot_run_here_are_named():
    missing = {"avx512bf16", "amx"} - set(BF16_KERNELS)
    if missing:  # the bfloat16 tests below run on the reference kernel only
        pytest.skip(f"this CPU lacks the {', '.join(sorted(missing))} bfloat16 kernel(s) "
                    f"(best: {_core.detected_bf16_kernel()})")


@pytest.mark.parametrize("sizes", NETS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("n", ROWS)
def test_float32_any_threads_bitwise(rng, fma_isa, sizes, n):
    coefs, intercepts = _net(rng, sizes)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    one = _predict(coefs, intercepts, X, 1)
    np.testing.assert_allclose(one, _reference(coefs, intercepts, X), rtol=1e-4, atol=1e-6)
    for n_threads in (2, 3):
        got = _predict(coefs, intercepts, X, n_threads)
        assert got.tobytes() == one.tobytes(), f"{n_threads} threads differ from one"
    log = _predict(coefs, intercepts, X, 2, log=True)
    assert log.tobytes() == _predict(coefs, intercepts, X, 1, log=True).tobytes()


@pytest.mark.parametrize("sizes", NETS[:2], ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("n", [1, 3])
def test_bfloat16_any_threads_bitwise(rng, bf16_kernel, sizes, n):
    coefs, intercepts = _net(rng, sizes)
    bf16 = _core.Bf16Weights(coefs, intercepts)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    one = _predict(coefs, intercepts, X, 1, bf16=bf16)
    # bfloat16 operands: agreement to bfloat16's precision.
    np.testing.assert_allclose(one, _reference(coefs, intercepts, X), rtol=0, atol=3e-2)
    for n_threads in (2, 3):
        got = _predict(coefs, intercepts, X, n_threads, bf16=bf16)
        assert got.tobytes() == one.tobytes(), f"{n_threads} threads differ from one"


def test_pixel_input_and_rows_any_threads_bitwise(rng):
    coefs, intercepts = _net(rng, NETS[0])
    images = rng.integers(0, 256, size=(50, 784), dtype=np.uint8)
    inp = _core.PixelInput(images, offset=np.array([120.0]), scale=np.array([70.0]),
                           channels_last=True)
    X = ((images.astype(np.float64) - 120.0) / 70.0).astype(np.float32)
    for rows in ([17], [3, 3, 49]):
        rows = np.array(rows, dtype=np.int64)
        want = _predict(coefs, intercepts, X[rows], 1)
        for n_threads in (1, 2, 3):
            assert _predict(coefs, intercepts, inp, n_threads, rows=rows).tobytes() == \
                want.tobytes()
            assert _predict(coefs, intercepts, X, n_threads, rows=rows).tobytes() == \
                want.tobytes()


@pytest.mark.parametrize("rows", [None, [17], [3, 3, 49]], ids=str)
def test_8bit_pixels_read_straight_to_bfloat16_predict_like_their_rows(rng, bf16_kernel,
                                                                      rows):
    # bfloat16 prediction reads 8-bit pixels through their bfloat16 table into layer 0's
    # operand, skipping the float32 rows: the same bits as packing those rows.
    coefs, intercepts = _net(rng, NETS[0])
    bf16 = _core.Bf16Weights(coefs, intercepts)
    images = rng.integers(0, 256, size=(50, 784), dtype=np.uint8)
    inp = _core.PixelInput(images, offset=np.array([120.0]), scale=np.array([70.0]))
    X = ((images.astype(np.float64) - 120.0) / 70.0).astype(np.float32)
    kw = {} if rows is None else {"rows": np.array(rows, dtype=np.int64)}
    want = _predict(coefs, intercepts, X, 1, bf16=bf16, **kw)
    for n_threads in (1, 2, 3):
        got = _predict(coefs, intercepts, inp, n_threads, bf16=bf16, **kw)
        assert got.tobytes() == want.tobytes()


def test_8bit_pixels_past_bfloat16s_largest_overflow_the_outputs(rng, bf16_kernel):
    # Pixels that scale to a finite float32 past bfloat16's largest round to infinity in
    # the table, as packed rows would: the outputs overflow; it is not a NaN input.
    coefs, intercepts = _net(rng, NETS[1])
    bf16 = _core.Bf16Weights(coefs, intercepts)
    images = rng.integers(0, 200, size=(4, 20), dtype=np.uint8)
    images[3, 5] = 255
    inp = _core.PixelInput(images, offset=np.zeros(1), scale=np.array([255 / 3.3999e38]))
    with pytest.raises(ValueError, match="outputs overflow float32"):
        _predict(coefs, intercepts, inp, 2, bf16=bf16)


def test_nan_in_one_image_is_refused_with_any_threads(rng):
    coefs, intercepts = _net(rng, NETS[0])
    X = rng.standard_normal((1, 784)).astype(np.float32)
    X[0, 500] = np.nan
    for n_threads in (1, 2):
        with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
            _predict(coefs, intercepts, X, n_threads)


@pytest.mark.parametrize("n", [1, 300])
def test_bfloat16_checks_the_input_in_float32_terms(rng, bf16_kernel, n):
    """The bfloat16 path checks the packed rows, then the float32 ones where a packed
    value is not finite: a float32 past bfloat16's largest is a finite input (whose
    outputs then overflow), not a NaN."""
    coefs, intercepts = _net(rng, NETS[1])
    bf16 = _core.Bf16Weights(coefs, intercepts)
    for bad in (np.nan, np.inf, -np.inf):
        X = rng.standard_normal((n, 20)).astype(np.float32)
        X[n - 1, 19] = bad
        with pytest.raises(ValueError, match="Input X contains NaN or infinity"):
            _predict(coefs, intercepts, X, 2, bf16=bf16)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    X[n - 1, 0] = np.float32(3.3999e38)  # rounds to infinity in bfloat16
    with pytest.raises(ValueError, match="outputs overflow float32"):
        _predict(coefs, intercepts, X, 2, bf16=bf16)


@pytest.mark.parametrize("n", [1, 300])
def test_outputs_that_overflow_are_refused_unless_asked_not_to_check(rng, n):
    coefs, intercepts = _net(rng, NETS[1])
    coefs[-1] *= np.float32(1e37)  # finite weights whose logits overflow to infinity
    # Positive inputs and first-layer weights: every hidden unit is on (with one row,
    # all of them off, one draw in 512, left finite logits).
    coefs[0] = np.abs(coefs[0])
    X = (np.abs(rng.standard_normal((n, 20))) * 1e3).astype(np.float32)
    with pytest.raises(ValueError, match="outputs overflow float32"):
        _predict(coefs, intercepts, X, 2)
    out = _predict(coefs, intercepts, X, 2, check_outputs=False)
    assert not np.isfinite(out).all()


def _call(coefs, intercepts, X, out):
    return _core.predict_proba(coefs, intercepts, X, activation=RELU, log=False, n_threads=1,
                               out=out)


def test_out_is_checked_before_anything_runs(rng):
    coefs, intercepts = _net(rng, NETS[1])
    X = rng.standard_normal((4, 20)).astype(np.float32)
    bad = {
        "has shape \\(4, 2\\), expected \\(4, 3\\)": np.zeros((4, 2), np.float32),
        "has shape \\(5, 3\\), expected \\(4, 3\\)": np.zeros((5, 3), np.float32),
        "contiguous": np.zeros((4, 6), np.float32)[:, ::2],
        "writ": np.zeros((4, 3), np.float32),
    }
    bad["writ"].flags.writeable = False
    for match, out in bad.items():
        before = out.copy()
        with pytest.raises(ValueError, match=match):
            _call(coefs, intercepts, X, out)
        np.testing.assert_array_equal(out, before)
    with pytest.raises(TypeError, match="float32"):
        _call(coefs, intercepts, X, np.zeros((4, 3), np.float64))


def test_out_must_not_overlap_the_input_or_the_weights(rng):
    coefs, intercepts = _net(rng, (3, 5, 3))
    X = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="out must not overlap X"):
        _call(coefs, intercepts, X, X)
    before = coefs[1].copy()
    with pytest.raises(ValueError, match="out must not overlap the model's weights"):
        _call(coefs, intercepts, X, coefs[1][:4])
    np.testing.assert_array_equal(coefs[1], before)
