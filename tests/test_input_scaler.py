"""input_scaler: pixels scaled inside the core's gather, bitwise equal to a pipeline, with
no float32 copy of X."""

import pickle
import tracemalloc

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from fastmlp import MLPImageClassifier, PixelScaler, _core, kernels
from fastmlp._input import pixel_input
from fastmlp.datasets import read_idx, write_idx

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FIT = dict(hidden_layer_sizes=(24,), max_iter=2, random_state=3)


def _uint8(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _labels(rng, n, k=3):
    return np.arange(n) % k if n < 3 * k else rng.integers(0, k, size=n)


def _weights(model):
    clf = model[-1] if hasattr(model, "steps") else model
    return clf.coefs_ + clf.intercepts_


def _assert_bitwise(a, b):
    for u, v in zip(_weights(a), _weights(b)):
        assert u.tobytes() == v.tobytes()


# The instruction sets of the 8-bit pixels' table lookups: AVX-512 where the CPU has it,
# and the scalar loops (any ISA below it).
LOOKUP_ISAS = ["generic"] + (["avx512"] if _core.detected_isa() == "avx512" else [])

SCALERS = [
    dict(mode="symmetric"),
    dict(mode="unit"),
    dict(mode="standard"),
    dict(mode="standard", per_channel=True),
    dict(mode="standard", per_channel=True, channel_axis=1),
]
# Rows, grayscale images, colour images channels last and first, and CIFAR-10's size.
SHAPES = [(90, 35), (90, 7, 5), (90, 6, 5, 3), (90, 3, 6, 5), (40, 32, 32, 3), (40, 3, 32, 32)]


def _compatible(shape, scaler):
    if not scaler.get("per_channel"):
        return True
    if len(shape) == 4:  # the scaler reads the channels from the axis it is told
        return (shape[1] == 3) == (scaler.get("channel_axis") == 1)
    return len(shape) == 3 and scaler.get("channel_axis", -1) == -1


@pytest.mark.parametrize("shape, scaler", [(shape, scaler) for shape in SHAPES
                                           for scaler in SCALERS if _compatible(shape, scaler)],
                         ids=str)
def test_fit_and_predict_equal_the_pipeline_bitwise(rng, shape, scaler):
    X, y = _uint8(rng, shape), _labels(rng, shape[0])
    pipe = make_pipeline(PixelScaler(**scaler), MLPImageClassifier(**FIT)).fit(X, y)
    fused = MLPImageClassifier(input_scaler=PixelScaler(**scaler), **FIT).fit(X, y)
    _assert_bitwise(pipe, fused)
    assert fused.predict_proba(X).tobytes() == pipe.predict_proba(X).tobytes()
    assert fused.predict_log_proba(X).tobytes() == pipe.predict_log_proba(X).tobytes()
    np.testing.assert_array_equal(fused.input_scaler_.scale_, pipe[0].scale_)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_augmentation_dropout_and_early_stopping_equal_the_pipeline(rng, n_threads):
    X, y = _uint8(rng, (160, 6, 7)), _labels(rng, 160)
    params = dict(FIT, early_stopping=True, random_shift=1, random_flip=True, dropout=0.25,
                  image_shape=(6, 7), n_threads=n_threads, max_iter=3)
    scaler = PixelScaler(mode="standard")
    pipe = make_pipeline(clone(scaler), MLPImageClassifier(**params)).fit(X, y)
    fused = MLPImageClassifier(input_scaler=scaler, **params).fit(X, y)
    _assert_bitwise(pipe, fused)
    assert fused.validation_scores_ == pipe[-1].validation_scores_


def test_partial_fit_keeps_the_scaler_of_its_first_call(rng):
    X0, X1 = _uint8(rng, (60, 20)), _uint8(rng, (60, 20)) // 2
    y = _labels(rng, 60)
    fused = MLPImageClassifier(input_scaler=PixelScaler(mode="standard"), **FIT)
    fused.partial_fit(X0, y, classes=[0, 1, 2]).partial_fit(X1, y)
    scaler = PixelScaler(mode="standard").fit(X0)
    plain = MLPImageClassifier(**FIT)
    plain.partial_fit(scaler.transform(X0), y, classes=[0, 1, 2])
    plain.partial_fit(scaler.transform(X1), y)
    _assert_bitwise(plain, fused)
    np.testing.assert_array_equal(fused.input_scaler_.mean_, scaler.mean_)


DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
          np.float16, np.float32, np.float64, np.bool_, ">i2", ">f8"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_real_dtype_trains_like_the_pipeline(rng, dtype):
    dtype = np.dtype(dtype)
    raw = rng.integers(0, 2 if dtype.kind == "b" else 100, size=(48, 12))
    X = (raw - 20 if dtype.kind in "if" else raw).astype(dtype)
    y = _labels(rng, 48)
    scaler = PixelScaler(mode="standard")
    pipe = make_pipeline(clone(scaler), MLPImageClassifier(**FIT)).fit(X, y)
    fused = MLPImageClassifier(input_scaler=scaler, **FIT).fit(X, y)
    _assert_bitwise(pipe, fused)
    assert fused.predict_proba(X).tobytes() == pipe.predict_proba(X).tobytes()


@pytest.mark.parametrize("isa", LOOKUP_ISAS)
# Statistics interleaved (channels last) or in runs (first); the vector lookups take up to
# four interleaved, more go to the scalar loops.
@pytest.mark.parametrize("n_rows, n_features, n_stats", [(1, 1, 1), (5, 12, 3), (33, 784, 1),
                                                         (3, 95, 1), (2, 195, 3), (3, 40, 4),
                                                         (2, 70, 2), (2, 195, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int64, np.float32,
                                   np.float64])
@pytest.mark.parametrize("channels_last", [True, False])
def test_scaled_rows_equal_the_float64_expression(rng, isa, n_rows, n_features, n_stats, dtype,
                                                  channels_last):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min, min(info.max, 10**6)) if info else (-300, 300)
    X = rng.integers(lo, hi, size=(n_rows, n_features), endpoint=True).astype(dtype)
    offset = rng.normal(0, 50, n_stats)
    scale = rng.uniform(0.5, 90, n_stats)
    rows = rng.integers(0, n_rows, size=2 * n_rows)
    out = np.full((rows.size, n_features), np.nan, dtype=np.float32)
    inp = _core.PixelInput(X, offset=offset, scale=scale, channels_last=channels_last)
    with kernels._isa(isa):
        _core.testing.pixel_rows(inp, rows, out)
    per = n_features // n_stats
    stat = (np.arange(n_features) % n_stats if channels_last
            else np.arange(n_features) // per)
    want = ((X[rows].astype(np.float64) - offset[stat]) / scale[stat]).astype(np.float32)
    assert out.tobytes() == want.tobytes()


@pytest.mark.parametrize("isa", LOOKUP_ISAS)
@pytest.mark.parametrize("n_rows, n_features, n_stats, kp", [
    (1, 1, 1, 1), (5, 12, 3, 16), (33, 784, 1, 800), (7, 95, 1, 97), (4, 195, 3, 224),
    (3, 64, 1, 64), (2, 3072, 3, 3072), (3, 40, 4, 64), (2, 195, 5, 200)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_8bit_rows_read_as_bfloat16_are_the_rounded_expression(rng, isa, n_rows, n_features,
                                                                n_stats, kp, channels_last,
                                                                dtype):
    # Straight from the pixels to bfloat16 through a table (bfloat16 training's gather):
    # the bfloat16 rounding of the float64 expression, zeros from D to kp, nothing past.
    info = np.iinfo(dtype)
    X = rng.integers(info.min, info.max, size=(n_rows, n_features), endpoint=True,
                     dtype=dtype)
    offset, scale = rng.normal(0, 50, n_stats), rng.uniform(0.5, 90, n_stats)
    rows = rng.integers(0, n_rows, size=2 * n_rows)
    inp = _core.PixelInput(X, offset=offset, scale=scale, channels_last=channels_last)
    with kernels._isa(isa):
        got = _core.testing.pixel_rows_bf16(inp, rows, kp)
    stat = (np.arange(n_features) % n_stats if channels_last
            else np.arange(n_features) // (n_features // n_stats))
    want = ((X[rows].astype(np.float64) - offset[stat]) / scale[stat]).astype(np.float32)
    assert np.array_equal(got[:, :n_features],
                          _core.testing.bf16_round(want.ravel()).reshape(want.shape))
    assert not got[:, n_features:kp].any()
    assert (got[:, kp:] == 0xFFFF).all()


def test_only_8bit_rows_are_read_straight_as_bfloat16(rng):
    X = rng.integers(0, 256, size=(4, 12), dtype=np.uint8)
    wide = _core.PixelInput(X.astype(np.uint16), offset=np.zeros(1), scale=np.ones(1))
    with pytest.raises(ValueError, match="not read straight to bfloat16"):
        _core.testing.pixel_rows_bf16(wide, np.arange(4), 12)


@pytest.mark.filterwarnings("ignore::fastmlp.exceptions.PrecisionWarning")  # no bfloat16 CPU
@pytest.mark.parametrize("isa", LOOKUP_ISAS)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape, scaler", [
    ((90, 35), dict(mode="symmetric")), ((90, 7, 5), dict(mode="standard")),
    ((90, 6, 5, 3), dict(mode="standard", per_channel=True)),
    ((90, 3, 6, 5), dict(mode="standard", per_channel=True, channel_axis=1))], ids=str)
def test_bfloat16_fits_equal_the_pipeline_bitwise(rng, isa, n_threads, shape, scaler):
    # bfloat16 reads 8-bit pixels through their tables, straight to bfloat16: what it
    # trains is the pipeline's, bit for bit.
    X, y = _uint8(rng, shape), _labels(rng, shape[0])
    fit = dict(FIT, precision="bfloat16", n_threads=n_threads)
    with kernels._isa(isa):
        pipe = make_pipeline(PixelScaler(**scaler), MLPImageClassifier(**fit)).fit(X, y)
        fused = MLPImageClassifier(input_scaler=PixelScaler(**scaler), **fit).fit(X, y)
    _assert_bitwise(pipe, fused)
    assert fused.predict_proba(X).tobytes() == pipe.predict_proba(X).tobytes()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(offset=np.zeros(1)), ValueError, "together"),
    (dict(offset=np.zeros(2), scale=np.ones(3)), ValueError, "same length"),
    (dict(offset=np.zeros(4), scale=np.ones(4)), ValueError, "do not divide"),
    (dict(offset=np.zeros(1), scale=np.zeros(1)), ValueError, "positive"),
    (dict(offset=np.array([np.nan]), scale=np.ones(1)), ValueError, "finite"),
    (dict(offset=np.zeros(1, np.float32), scale=np.ones(1)), TypeError, "float64"),
    (dict(), TypeError, "float32"),
])
def test_pixel_input_refuses_a_bad_affine(kwargs, error, match):
    with pytest.raises(error, match=match):
        _core.PixelInput(np.zeros((3, 6), np.uint8), **kwargs)


def test_pixel_input_refuses_bad_arrays():
    affine = dict(offset=np.zeros(1), scale=np.ones(1))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.PixelInput(np.zeros((4, 6), np.uint8)[:, ::2], **affine)
    with pytest.raises(ValueError, match="2-dimensional"):
        _core.PixelInput(np.zeros((2, 3, 4), np.uint8), **affine)
    with pytest.raises(TypeError, match="real dtype"):
        _core.PixelInput(np.zeros((2, 3), np.complex64), **affine)
    with pytest.raises(TypeError, match="NumPy array"):
        _core.PixelInput([[1, 2]], **affine)


def test_the_core_checks_the_rows_it_is_given(rng):
    X, y = _uint8(rng, (40, 10)), _labels(rng, 40)
    model = MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(X, y)
    inp = pixel_input(X, model.input_scaler_)
    args = (model.coefs_, model.intercepts_, inp)
    kw = dict(activation=model._activation_code(), log=False, n_threads=0)
    with pytest.raises(ValueError, match="not a row of X"):
        _core.predict_proba(*args, rows=np.array([0, 40]), **kw)
    good = _core.predict_proba(*args, rows=np.array([3, 1]), **kw)
    full = _core.predict_proba(*args, **kw)
    assert good.tobytes() == full[[3, 1]].tobytes()
    with pytest.raises(ValueError, match="not a row of X"):
        _core.train_batches(
            coefs=model.coefs_, intercepts=model.intercepts_, state={}, X=inp,
            sample_rows=np.full(40, 99, np.int64), y=np.zeros(40, np.int32),
            sample_weight=None, order=np.arange(40), batch_size=8,
            activation=model._activation_code(), optimizer=_sgd_config(),
            options=_core.TrainOptions(), steps=np.zeros(1, np.int64), totals=np.zeros(4),
            n_threads=1)


def _sgd_config():
    c = _core.OptimConfig()
    c.solver, c.learning_rate, c.momentum = _core.Solver.sgd, 0.1, 0.0
    return c


# A max_value that small also warns that the data exceed it; the error is under test.
@pytest.mark.filterwarnings("ignore::fastmlp.PixelRangeWarning")
def test_bad_input_scaler_values_raise(rng):
    X, y = _uint8(rng, (30, 8)), _labels(rng, 30)
    with pytest.raises(InvalidParameterError, match="input_scaler"):
        MLPImageClassifier(input_scaler="unit").fit(X, y)
    tiny = PixelScaler(mode="unit", max_value=1e-37)
    with pytest.raises(ValueError, match="float32 range"):
        make_pipeline(clone(tiny), MLPImageClassifier(**FIT)).fit(X + 1, y)
    with pytest.raises(ValueError, match="float32 range"):
        MLPImageClassifier(input_scaler=tiny, **FIT).fit(X + 1, y)
    huge = np.full((30, 8), 1e300)
    with pytest.raises(ValueError, match="float32 range"):
        MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(huge, y)
    with pytest.raises(ValueError, match="NaN"):
        MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(np.full((30, 8), np.nan), y)


def test_prediction_checks_what_it_is_given(rng):
    X, y = _uint8(rng, (30, 8)), _labels(rng, 30)
    model = MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :7])
    with pytest.raises(ValueError, match="float32 range"):
        model.predict(np.full((2, 8), 1e300))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((2, 8), np.nan))


def test_fit_makes_no_float32_copy_of_the_images(rng):
    X, y = _uint8(rng, (20000, 784)), _labels(rng, 20000, k=10)  # 15.7 MB; float32: 63 MB
    model = MLPImageClassifier(input_scaler=PixelScaler(), hidden_layer_sizes=(16,),
                               max_iter=1, early_stopping=True, random_state=0)
    tracemalloc.start()
    try:
        model.fit(X, y)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        model.predict(X)
        predict_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fit_peak < X.nbytes, fit_peak  # labels, orders and weights only
    assert predict_peak < X.nbytes, predict_peak


def test_memory_mapped_files_train_like_arrays_in_memory(rng, tmp_path):
    X, y = _uint8(rng, (120, 6, 6)), _labels(rng, 120)
    np.save(tmp_path / "x.npy", X)
    write_idx(tmp_path / "x-idx3-ubyte", X)
    on_disk = [np.load(tmp_path / "x.npy", mmap_mode="r"), read_idx(tmp_path / "x-idx3-ubyte")]
    assert all(isinstance(a, np.memmap) for a in on_disk)
    want = MLPImageClassifier(input_scaler=PixelScaler(mode="standard"), **FIT).fit(X, y)
    for arr in on_disk:
        got = MLPImageClassifier(input_scaler=PixelScaler(mode="standard"), **FIT).fit(arr, y)
        _assert_bitwise(want, got)
        assert got.predict_proba(arr).tobytes() == want.predict_proba(X).tobytes()


def test_the_fitted_model_pickles_clones_and_searches(rng):
    X, y = _uint8(rng, (60, 12)), _labels(rng, 60)
    model = MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    assert again.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    assert not hasattr(clone(model), "input_scaler_")
    search = GridSearchCV(MLPImageClassifier(input_scaler=PixelScaler(), **FIT),
                          {"input_scaler__mode": ["unit", "standard"]}, cv=2).fit(X, y)
    assert search.best_estimator_.input_scaler_.mode in ("unit", "standard")


def test_without_input_scaler_nothing_changes(rng):
    X, y = rng.normal(size=(50, 9)).astype(np.float32), _labels(rng, 50)
    model = MLPImageClassifier(**FIT).fit(X, y)
    assert model.input_scaler_ is None
    with pytest.raises(TypeError, match="float32"):
        _core.predict_proba(model.coefs_, model.intercepts_, X.astype(np.float64),
                            activation=model._activation_code(), log=False, n_threads=0)


# -- shuffle="block": locality for memory-mapped files ------------------------------------

def test_block_order_permutes_blocks_then_the_samples_inside_them():
    from fastmlp._training import epoch_order

    order = epoch_order(np.random.RandomState(0), 23, "block", 5)
    assert sorted(order) == list(range(23))
    runs = [set(order[i:i + 5] // 5) for i in range(0, 23, 5)]
    assert all(len(r) == 1 for r in runs[:-1])  # every block is visited in one piece
    assert [b for r in runs for b in r] != sorted(b for r in runs for b in r)  # blocks permuted
    again = epoch_order(np.random.RandomState(0), 23, "block", 5)
    assert order.tobytes() == again.tobytes()
    assert epoch_order(None, 4, False, 5).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_block_shuffle_trains_reproducibly(rng, monkeypatch, n_threads):
    import fastmlp._training as training

    monkeypatch.setattr(training, "SHUFFLE_BLOCK_BYTES", 12 * 30)  # blocks of 30 rows
    X, y = _uint8(rng, (100, 12)), _labels(rng, 100)
    fits = [MLPImageClassifier(input_scaler=PixelScaler(), shuffle="block",
                               n_threads=threads, **FIT).fit(X, y) for threads in (1, n_threads)]
    _assert_bitwise(*fits)
    plain = MLPImageClassifier(input_scaler=PixelScaler(), **FIT).fit(X, y)
    assert plain.coefs_[0].tobytes() != fits[0].coefs_[0].tobytes()
    with pytest.raises(InvalidParameterError, match="shuffle"):
        MLPImageClassifier(shuffle="blocks").fit(X, y)


def test_block_shuffle_reads_a_mapped_file_ahead_block_by_block(rng, tmp_path, monkeypatch):
    import fastmlp._training as training

    monkeypatch.setattr(training, "SHUFFLE_BLOCK_BYTES", 16 * 25)  # blocks of 25 rows
    calls = []
    monkeypatch.setattr(training.os, "posix_fadvise",
                        lambda fd, offset, length, advice: calls.append((offset, length, advice)))
    X, y = _uint8(rng, (110, 16)), _labels(rng, 110)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    header = mapped.offset
    MLPImageClassifier(input_scaler=PixelScaler(), shuffle="block", **FIT).fit(mapped, y)
    blocks_per_epoch = 5  # 110 rows in blocks of 25
    assert len(calls) == FIT["max_iter"] * blocks_per_epoch
    assert {c[0] for c in calls} == {header + b * 25 * 16 for b in range(blocks_per_epoch)}
    assert all(c[1] == 25 * 16 and c[2] == training.os.POSIX_FADV_WILLNEED for c in calls)
    calls.clear()  # a slice of the mapping starts further into the file
    assert training._mapped_file(np.asarray(mapped[10:])) == (mapped.filename, header + 160)
    MLPImageClassifier(input_scaler=PixelScaler(), shuffle="block", **FIT).fit(X, y)
    assert calls == []  # X in memory: nothing to read ahead
