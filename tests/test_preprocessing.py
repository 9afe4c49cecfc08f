"""Tests for fastmlp.preprocessing.PixelScaler.

Shape legend: n samples, H x W pixels, C channels, d = H * W * C features.
"""

import contextlib
import doctest
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastmlp.preprocessing
from fastmlp.exceptions import PixelRangeWarning
from fastmlp.preprocessing import PixelScaler


def _images(rng, shape, dtype=np.uint8):
    return rng.integers(0, 256, size=shape).astype(dtype)


# -- scikit-learn's estimator checks -----------------------------------------------------


# The checks feed 2-D data with many different feature counts; n_channels=1 is the only
# channel count that divides all of them, so the per-channel path is checked with it here
# and with real channel counts in the tests below.
@parametrize_with_checks(
    [
        PixelScaler(),
        PixelScaler(mode="unit", max_value=65535.0),
        PixelScaler(mode="standard"),
        PixelScaler(mode="standard", per_channel=True, n_channels=1),
        PixelScaler(mode="standard", per_channel=True, n_channels=1, channel_axis=1),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_docstring_examples():
    result = doctest.testmod(fastmlp.preprocessing, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- exact values ------------------------------------------------------------------------


def test_symmetric_exact_on_uint8():
    X = np.arange(256, dtype=np.uint8).reshape(2, 8, 16)
    Xt = PixelScaler().fit_transform(X)
    expected = (np.arange(256, dtype=np.float64) / 127.5 - 1).astype(np.float32)
    assert Xt.dtype == np.float32 and Xt.shape == (2, 128) and Xt.flags.c_contiguous
    assert_allclose(Xt.ravel(), expected, rtol=0, atol=1e-7)
    assert Xt[0, 0] == -1.0 and Xt[-1, -1] == 1.0
    # 127.5 is the centre; 127 and 128 sit symmetrically around it.
    assert Xt.ravel()[127] == -Xt.ravel()[128]


def test_unit_exact_on_uint8():
    X = np.arange(256, dtype=np.uint8).reshape(4, 64)
    Xt = PixelScaler(mode="unit").fit_transform(X)
    # float64 arithmetic rounded once: equal to the correctly rounded float32 of x / 255.
    assert_array_equal(Xt.ravel(), (np.arange(256) / 255.0).astype(np.float32))
    assert Xt[0, 0] == 0.0 and Xt[-1, -1] == 1.0


@pytest.mark.parametrize("mode, low, high", [("symmetric", -1.0, 1.0), ("unit", 0.0, 1.0)])
def test_max_value_for_16_bit_images(mode, low, high):
    X = np.array([[0, 16384, 65535]], dtype=np.uint16)
    Xt = PixelScaler(mode=mode, max_value=65535).fit_transform(X)
    assert Xt[0, 0] == low and Xt[0, 2] == high
    assert_allclose(Xt[0, 1], (16384 / 65535) * (high - low) + low, rtol=1e-6)


def test_standard_global_matches_numpy(rng):
    X = _images(rng, (50, 7, 5))
    scaler = PixelScaler(mode="standard").fit(X)
    flat = X.reshape(50, -1).astype(np.float64)
    assert_allclose(scaler.mean_, [flat.mean()], rtol=1e-12)
    assert_allclose(scaler.var_, [flat.var()], rtol=1e-12)
    assert_allclose(scaler.scale_, [flat.std()], rtol=1e-12)
    Xt = scaler.transform(X)
    assert Xt.dtype == np.float32
    assert_allclose(Xt, (flat - flat.mean()) / flat.std(), rtol=1e-6, atol=1e-6)
    assert_allclose(Xt.mean(dtype=np.float64), 0.0, atol=1e-6)
    assert_allclose(Xt.std(dtype=np.float64), 1.0, rtol=1e-6)


def test_standard_statistics_over_many_blocks(rng):
    # Enough rows for the statistics to be merged over many row blocks.
    X = rng.normal(1000.0, 3.0, size=(5000, 40))
    scaler = PixelScaler(mode="standard").fit(X)
    assert_allclose(scaler.mean_, [X.mean()], rtol=1e-13)
    assert_allclose(scaler.var_, [X.var()], rtol=1e-10)


# -- per-channel statistics --------------------------------------------------------------


def test_per_channel_channels_last(rng):
    X = _images(rng, (30, 6, 4, 3)).astype(np.float64)
    X[..., 1] = X[..., 1] * 0.1 + 50  # channels with visibly different statistics
    scaler = PixelScaler(mode="standard", per_channel=True).fit(X)
    mean, std = X.mean(axis=(0, 1, 2)), X.std(axis=(0, 1, 2))
    assert_allclose(scaler.mean_, mean, rtol=1e-12)
    assert_allclose(scaler.scale_, std, rtol=1e-12)
    assert_allclose(scaler.var_, X.var(axis=(0, 1, 2)), rtol=1e-12)
    Xt = scaler.transform(X)
    assert Xt.shape == (30, 6 * 4 * 3)
    assert_allclose(Xt, ((X - mean) / std).reshape(30, -1), rtol=1e-5, atol=1e-5)
    per_channel = Xt.reshape(30, 6, 4, 3)
    assert_allclose(per_channel.mean(axis=(0, 1, 2), dtype=np.float64), 0.0, atol=1e-5)
    assert_allclose(per_channel.std(axis=(0, 1, 2), dtype=np.float64), 1.0, rtol=1e-5)


def test_per_channel_channels_first(rng):
    X = _images(rng, (20, 2, 5, 5))
    X[:, 0] //= 4
    scaler = PixelScaler(mode="standard", per_channel=True, channel_axis=1).fit(X)
    Xf = X.astype(np.float64)
    mean, std = Xf.mean(axis=(0, 2, 3)), Xf.std(axis=(0, 2, 3))
    assert_allclose(scaler.mean_, mean, rtol=1e-12)
    assert_allclose(scaler.scale_, std, rtol=1e-12)
    expected = ((Xf - mean[:, None, None]) / std[:, None, None]).reshape(20, -1)
    assert_allclose(scaler.transform(X), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channel_axis", [-1, 1])
def test_per_channel_flat_input_with_n_channels(rng, channel_axis):
    images = _images(rng, (10, 4, 4, 3) if channel_axis == -1 else (10, 3, 4, 4))
    flat = images.reshape(10, -1)
    from_images = PixelScaler(mode="standard", per_channel=True, channel_axis=channel_axis)
    from_flat = clone(from_images).set_params(n_channels=3)
    from_images.fit(images)
    from_flat.fit(flat)
    assert_allclose(from_flat.mean_, from_images.mean_, rtol=1e-14)
    assert_allclose(from_flat.scale_, from_images.scale_, rtol=1e-14)
    assert_array_equal(from_flat.transform(flat), from_images.transform(images))
    # A model fitted on images also takes the same images flattened.
    assert_array_equal(from_images.transform(flat), from_images.transform(images))


def test_per_channel_grayscale_is_global(rng):
    X = _images(rng, (10, 8, 8))
    per_channel = PixelScaler(mode="standard", per_channel=True).fit(X)
    global_ = PixelScaler(mode="standard").fit(X)
    assert per_channel.mean_.shape == (1,)
    assert_array_equal(per_channel.transform(X), global_.transform(X))


def test_refit_in_another_mode_clears_statistics(rng):
    X = _images(rng, (5, 3, 3))
    scaler = PixelScaler(mode="standard").fit(X)
    assert scaler.mean_ is not None
    scaler.set_params(mode="unit").fit(X)
    assert scaler.mean_ is None and scaler.var_ is None
    assert_array_equal(scaler.offset_, [0.0])
    assert_array_equal(scaler.scale_, [255.0])


def test_per_channel_ignored_by_fixed_modes(rng):
    X = _images(rng, (5, 12))
    Xt = PixelScaler(per_channel=True).fit_transform(X)  # no channels needed
    assert_array_equal(Xt, PixelScaler().fit_transform(X))


def test_per_channel_needs_channels_for_2d_input(rng):
    with pytest.raises(ValueError, match="per_channel=True needs to know the channels"):
        PixelScaler(mode="standard", per_channel=True).fit(_images(rng, (5, 12)))


def test_per_channel_channel_mismatches(rng):
    with pytest.raises(
        ValueError, match=r"n_channels=5 does not divide the number of features \(12\)"
    ):
        PixelScaler(mode="standard", per_channel=True, n_channels=5).fit(_images(rng, (5, 12)))
    with pytest.raises(ValueError, match="n_channels=2, but the images have 3 channel"):
        PixelScaler(mode="standard", per_channel=True, n_channels=2).fit(_images(rng, (5, 2, 2, 3)))
    scaler = PixelScaler(mode="standard", per_channel=True).fit(_images(rng, (5, 4, 4, 3)))
    with pytest.raises(ValueError, match="X has 4 channel.*for 3 channels"):
        scaler.transform(_images(rng, (5, 4, 3, 4)))  # same d = 48, other channel count


# -- degenerate data ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 255, 0.1, 1e6])
@pytest.mark.parametrize("per_channel", [False, True])
def test_constant_data_stays_finite(value, per_channel):
    X = np.full((300, 4, 4, 2), value)
    scaler = PixelScaler(mode="standard", per_channel=per_channel).fit(X)
    assert_array_equal(scaler.scale_, 1.0)
    Xt = scaler.transform(X)
    assert np.isfinite(Xt).all()
    assert_allclose(Xt, 0.0, atol=1e-6 * max(1.0, value))


def test_one_constant_channel(rng):
    X = _images(rng, (10, 3, 3, 2))
    X[..., 1] = 7
    scaler = PixelScaler(mode="standard", per_channel=True).fit(X)
    assert scaler.scale_[1] == 1.0 and scaler.scale_[0] > 1.0
    assert_array_equal(scaler.transform(X).reshape(10, 3, 3, 2)[..., 1], 0.0)


# -- the range check at fit (PixelRangeWarning) -------------------------------------------


@pytest.mark.parametrize("mode", ["symmetric", "unit"])
def test_digits_range_warns_and_names_the_max_value_to_use(mode):
    X = load_digits().data  # float64 holding whole numbers 0..16
    with pytest.warns(PixelRangeWarning, match=r"maximum 16 is far below max_value=255.*"
                                               r"pass max_value=16\."):
        PixelScaler(mode=mode).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        Xt = PixelScaler(mode=mode, max_value=16).fit_transform(X)  # the advice, followed
    assert Xt.max() == 1.0


@pytest.mark.parametrize("high, max_value, warns", [
    (63, 255, True), (64, 255, False),  # 255 / 4 = 63.75
    (25, 100, True), (26, 100, False),  # exactly a quarter still warns
    (1, 255, True),  # 0/1 masks
    (255, 255, False), (65535, 65535, False), (16383, 65535, True),
])
def test_far_below_threshold_on_integer_images(rng, high, max_value, warns):
    X = rng.integers(0, high, size=(50, 6, 6), endpoint=True).astype(np.uint16)
    X[0, 0, 0] = high  # the maximum is exactly `high`
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PixelScaler(max_value=max_value).fit(X)
    assert [w.category for w in caught] == ([PixelRangeWarning] if warns else [])


def test_dark_images_that_reach_full_intensity_do_not_warn(rng):
    X = rng.integers(0, 20, size=(200, 28, 28), dtype=np.uint8)  # mostly black
    X[17, 3, 4] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        PixelScaler().fit(X)


@pytest.mark.parametrize("mode, nominal", [("symmetric", r"\[-1, 1\]"), ("unit", r"\[0, 1\]")])
@pytest.mark.parametrize("X", [np.array([[0.0, 255.5]]), np.array([[0, 300]], dtype=np.uint16)],
                         ids=["float", "uint16"])
def test_values_above_max_value_warn(mode, nominal, X):
    with pytest.warns(PixelRangeWarning, match=rf"maximum {X.max():g} exceeds max_value=255, "
                                               rf"so those pixels scale beyond {nominal}"):
        Xt = PixelScaler(mode=mode).fit_transform(X)
    assert Xt.max() > 1.0  # legal, hence a warning: the values are scaled, not clipped


@pytest.mark.parametrize("X", [
    np.zeros((4, 9), dtype=np.uint8),  # black images say nothing about the bit depth
    np.linspace(0.0, 1.0, 36).reshape(4, 9),  # fractional: maybe scaled on purpose
    np.full((4, 9), -5.0),  # negative values are not judged
], ids=["zeros", "fractional", "negative"])
def test_data_the_range_check_does_not_judge(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        PixelScaler().fit(X)


def test_standard_mode_has_no_range_check():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        PixelScaler(mode="standard").fit(load_digits().data)


def test_one_fractional_value_in_a_late_block_stops_the_warning(rng):
    # Many blocks of whole numbers, one fraction in the last row: every block is tested.
    rows = 8 * fastmlp.preprocessing._block_rows(64)
    X = rng.integers(0, 17, size=(rows, 64)).astype(np.float64)
    with pytest.warns(PixelRangeWarning):
        PixelScaler().fit(X)
    X[-1, -1] = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        PixelScaler().fit(X)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_range_check_reads_a_memmap_without_copying_it(tmp_path, rng, dtype):
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=dtype,
                                  shape=(20000, 28, 28))
    X[:] = rng.integers(0, 17, size=(28, 28))  # digits-like values, the same image
    tracemalloc.start()
    try:
        with pytest.warns(PixelRangeWarning, match="maximum 16 "):
            PixelScaler().fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 10  # blocks of rows at most, never a copy of X


# -- the channel axis of 4-D images ------------------------------------------------------


def test_channels_first_images_with_the_default_axis_are_refused(rng):
    X = _images(rng, (6, 3, 8, 8))
    scaler = PixelScaler(mode="standard", per_channel=True)
    with pytest.raises(ValueError, match=r"axis -1 of X, of size 8.*axis 1 has 3.*"
                                         r"\(n, C, H, W\).*Pass channel_axis=1"):
        scaler.fit(X)
    fitted = scaler.set_params(channel_axis=1).fit(X)
    assert_allclose(fitted.mean_, X.mean(axis=(0, 2, 3)))


def test_channels_last_images_with_axis_1_are_refused(rng):
    X = _images(rng, (6, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\(n, H, W, C\).*Pass channel_axis=-1"):
        PixelScaler(mode="standard", per_channel=True, channel_axis=1).fit(X)


@pytest.mark.parametrize("shape, params, n_stats", [
    ((6, 3, 8, 8), {"n_channels": 8}, 8),  # an explicit channel count is taken at its word
    ((6, 5, 6, 7), {}, 7),  # neither axis looks like channels: nothing to suggest
    ((6, 3, 8, 4), {}, 4),  # both could be: the stated axis wins
    ((6, 2, 5, 5), {"channel_axis": 1}, 2),
])
def test_channel_axis_accepted_when_not_ambiguous(rng, shape, params, n_stats):
    scaler = PixelScaler(mode="standard", per_channel=True, **params).fit(_images(rng, shape))
    assert scaler.mean_.shape == (n_stats,)


@pytest.mark.parametrize("params", [{"mode": "standard"}, {"mode": "unit", "per_channel": True}])
def test_channel_axis_only_checked_for_per_channel_statistics(rng, params):
    PixelScaler(**params).fit(_images(rng, (6, 3, 8, 8)))  # no channels are used


# -- input forms -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["symmetric", "unit", "standard"])
def test_image_shapes_flatten_in_c_order(rng, mode):
    for shape in [(6, 5, 4), (6, 5, 4, 3), (6, 3, 5, 4)]:
        X = _images(rng, shape)
        scaler = PixelScaler(mode=mode).fit(X)
        assert scaler.n_features_in_ == int(np.prod(shape[1:]))
        Xt = scaler.transform(X)
        assert Xt.shape == (6, scaler.n_features_in_)
        assert_array_equal(Xt, PixelScaler(mode=mode).fit(X.reshape(6, -1)).transform(X))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float16, np.float32, bool])
def test_any_real_dtype(rng, dtype):
    X = _images(rng, (4, 6, 6)).astype(dtype)
    # Boolean pixels (max 1) against max_value=255 are the case PixelRangeWarning is for.
    warns = pytest.warns(PixelRangeWarning) if dtype is bool else contextlib.nullcontext()
    with warns:
        Xt = PixelScaler(mode="unit").fit_transform(X)
    assert Xt.dtype == np.float32
    assert_allclose(Xt, X.reshape(4, -1).astype(np.float64) / 255, rtol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True])
def test_fortran_and_read_only_inputs(rng, per_channel):
    X = _images(rng, (8, 5, 5, 3))
    scaler = PixelScaler(mode="standard", per_channel=per_channel)
    expected = clone(scaler).fit(X).transform(X)
    fortran = np.asfortranarray(X)
    read_only = X.copy()
    read_only.flags.writeable = False
    for variant in (fortran, read_only, np.asfortranarray(X.reshape(8, -1))):
        if variant.ndim == 2 and per_channel:
            scaler.set_params(n_channels=3)
        Xt = clone(scaler).fit(variant).transform(variant)
        assert Xt.flags.c_contiguous
        assert_array_equal(Xt, expected)
    assert not read_only.flags.writeable  # the input was not touched


def test_input_not_modified(rng):
    X = rng.random((5, 10)).astype(np.float32) * 255
    before = X.copy()
    Xt = PixelScaler(mode="standard").fit_transform(X)
    assert_array_equal(X, before)
    assert not np.shares_memory(X, Xt)


def test_lists(rng):
    X = _images(rng, (3, 2, 2))
    assert_array_equal(PixelScaler().fit_transform(X.tolist()), PixelScaler().fit_transform(X))
    flat = X.reshape(3, -1)
    assert_array_equal(
        PixelScaler().fit_transform(flat.tolist()), PixelScaler().fit_transform(flat)
    )


def test_pandas_in_and_out(rng):
    pd = pytest.importorskip("pandas")
    X = _images(rng, (6, 4))
    df = pd.DataFrame(X, columns=["r", "g", "b", "a"], index=list("uvwxyz"))
    scaler = PixelScaler(mode="standard").fit(df)
    assert_array_equal(scaler.feature_names_in_, ["r", "g", "b", "a"])
    assert_array_equal(scaler.get_feature_names_out(), ["r", "g", "b", "a"])
    from_numpy = PixelScaler(mode="standard").fit(X)
    assert_array_equal(scaler.transform(df), from_numpy.transform(X))

    out = clone(scaler).set_output(transform="pandas").fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["r", "g", "b", "a"]
    assert list(out.index) == list("uvwxyz")
    assert (out.dtypes == np.float32).all()
    assert_array_equal(out.to_numpy(), from_numpy.transform(X))


def test_feature_names_for_images(rng):
    scaler = PixelScaler().fit(_images(rng, (2, 2, 3)))
    assert_array_equal(scaler.get_feature_names_out(), [f"x{i}" for i in range(6)])
    assert not hasattr(scaler, "feature_names_in_")


# -- round trips and composition ---------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "symmetric"},
        {"mode": "unit"},
        {"mode": "unit", "max_value": 1000.0},
        {"mode": "standard"},
        {"mode": "standard", "per_channel": True},
        {"mode": "standard", "per_channel": True, "channel_axis": 1},
    ],
)
def test_inverse_transform_round_trip(rng, params):
    X = _images(rng, (12, 3, 4, 4))
    scaler = PixelScaler(**params).fit(X)
    back = scaler.inverse_transform(scaler.transform(X))
    assert back.dtype == np.float32 and back.shape == (12, 48)
    assert_allclose(back, X.reshape(12, -1), atol=1e-4)
    assert_array_equal(np.rint(back).astype(np.uint8), X.reshape(12, -1))


def test_inverse_transform_checks_features(rng):
    scaler = PixelScaler().fit(_images(rng, (3, 8)))
    with pytest.raises(ValueError, match="X has 5 features, but PixelScaler is expecting 8"):
        scaler.inverse_transform(np.zeros((3, 5), dtype=np.float32))


@pytest.mark.parametrize("per_channel", [False, True])
def test_pickle_round_trip(rng, per_channel):
    X = _images(rng, (7, 3, 3, 2))
    scaler = PixelScaler(mode="standard", per_channel=per_channel).fit(X)
    restored = pickle.loads(pickle.dumps(scaler))
    assert restored.get_params() == scaler.get_params()
    assert_array_equal(restored.transform(X), scaler.transform(X))
    assert_array_equal(restored.mean_, scaler.mean_)


def test_in_pipeline(rng):
    X = _images(rng, (60, 4, 4))
    y = (X.reshape(60, -1).mean(axis=1) > X.mean()).astype(int)
    flat = X.reshape(60, -1)
    pipe = make_pipeline(PixelScaler(mode="standard"), LogisticRegression())
    pipe.fit(flat, y)
    assert pipe.score(flat, y) > 0.8
    assert_array_equal(pipe[:-1].get_feature_names_out(), [f"x{i}" for i in range(16)])
    # The scaler's parameters are reachable (and searchable) through the pipeline.
    pipe2 = clone(pipe).set_params(pixelscaler__mode="unit")
    assert isinstance(pipe2, Pipeline) and pipe2[0].mode == "unit"
    pipe2.fit(flat, y)
    assert_allclose(pipe2[0].transform(flat), flat / 255, rtol=1e-6)


# -- bad parameters and inputs -----------------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        ({"mode": "minmax"}, "'mode' parameter of PixelScaler must be a str among"),
        ({"per_channel": "yes"}, "'per_channel' parameter"),
        ({"n_channels": 0}, "'n_channels' parameter"),
        ({"n_channels": 2.5}, "'n_channels' parameter"),
        ({"channel_axis": 2}, "'channel_axis' parameter"),
        ({"max_value": 0}, "'max_value' parameter"),
        ({"max_value": -255.0}, "'max_value' parameter"),
    ],
)
def test_invalid_parameters(rng, params, match):
    scaler = PixelScaler(**params)  # __init__ only stores
    with pytest.raises((ValueError, TypeError), match=match):
        scaler.fit(_images(rng, (3, 4)))


F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("mode", ["unit", "symmetric"])
@pytest.mark.parametrize("max_value", [1e-300, 1e-39, 5e-39, np.inf, np.nan, 1e39, 1e300])
def test_max_value_that_scales_beyond_float32_is_refused(rng, mode, max_value):
    with pytest.raises(ValueError, match="'max_value' parameter of PixelScaler must be"):
        PixelScaler(mode=mode, max_value=max_value).fit(_images(rng, (3, 4)))


@pytest.mark.parametrize("mode", ["unit", "symmetric"])
@pytest.mark.parametrize("max_value", [2 / F32_MAX, F32_MAX])
def test_extreme_max_values_that_stay_finite_are_accepted(mode, max_value):
    X = np.array([[0.0, max_value / 2, max_value]])
    Xt = PixelScaler(mode=mode, max_value=max_value).fit_transform(X)
    low = 0.0 if mode == "unit" else -1.0
    assert_allclose(Xt, [[low, (low + 1) / 2, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    "scaler, X_fit, X",
    [
        (PixelScaler(mode="unit", max_value=1e-30), [[0.0]], [[1e10]]),
        (PixelScaler(mode="symmetric", max_value=1e-30), [[0.0]], [[-1e10]]),
        (PixelScaler(mode="standard"), [[0.0], [1e-150]], [[1.0]]),  # std 5e-151
        (PixelScaler(mode="standard", per_channel=True, n_channels=2),
         [[0.0, 0.0], [1.0, 1e-150]], [[0.0, 1.0]]),
    ],
    ids=["unit", "symmetric", "standard", "per channel"],
)
def test_scaling_beyond_float32_is_an_error_not_inf(scaler, X_fit, X):
    Xt = scaler.fit_transform(np.array(X_fit))
    assert np.isfinite(Xt).all()  # the training data itself scales fine
    with pytest.raises(ValueError, match=r"row 0 scales to .* beyond the float32 range"):
        scaler.transform(np.array(X))


def test_inverse_transform_beyond_float32_is_an_error_not_inf():
    scaler = PixelScaler(mode="unit", max_value=1e38).fit([[0.0]])
    with pytest.raises(ValueError, match="beyond the float32 range"):
        scaler.inverse_transform([[0.5], [1e10]])


@pytest.mark.parametrize("axis", [5, 1.0, "1", True])
def test_transform_checks_a_channel_axis_set_after_fit(axis):
    X = np.ones((2, 2, 2, 3))
    scaler = PixelScaler("standard", per_channel=True).fit(X)
    scaler.set_params(channel_axis=axis)
    with pytest.raises(ValueError, match="channel_axis must be -1 or 1"):
        scaler.transform(X)


def test_n_channels_refuses_a_bool():
    with pytest.raises(ValueError, match="n_channels must be a positive integer or None"):
        PixelScaler("standard", per_channel=True, n_channels=True).fit(np.ones((2, 4)))


@pytest.mark.parametrize("X", [np.full((2, 2), 1e155), np.array([[0.0, 1e200], [1e200, 0.0]])])
def test_standard_statistics_beyond_float64_are_refused(X):
    scaler = PixelScaler(mode="standard")
    with pytest.raises(ValueError, match="variance overflows float64"):
        scaler.fit(X)
    assert not hasattr(scaler, "scale_")


@pytest.mark.parametrize("value", [1e-310, 1e-300, 1e-30])
def test_standard_mode_with_a_denormal_or_tiny_spread_stays_finite(value):
    X = np.array([[0.0], [value]] * 50)
    Xt = PixelScaler(mode="standard").fit_transform(X)
    assert np.isfinite(Xt).all() and np.abs(Xt).max() <= 1.0 + 1e-6


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.zeros((2, 2, 2, 2, 2)), ValueError, "got an array with 5 dimensions"),
        (np.zeros(5), ValueError, "Expected 2D array, got 1D array"),
        (np.zeros((0, 4)), ValueError, "0 sample"),
        (np.zeros((0, 3, 3)), ValueError, "0 sample"),
        (np.zeros((3, 0)), ValueError, "0 feature"),
        (np.array([[1.0, np.nan]]), ValueError, "Input X contains NaN"),
        (np.array([[1.0, np.inf]]), ValueError, "Input X contains infinity"),
        (np.array([[[1.0, np.nan]]]), ValueError, "Input X contains NaN"),
        (np.array([[1 + 2j, 3]]), ValueError, "Complex data not supported"),
        (np.array([["a", "b"]]), ValueError, "dtype='numeric' is not compatible"),
    ],
)
def test_invalid_inputs(X, error, match):
    with pytest.raises(error, match=match):
        PixelScaler(mode="standard").fit(X)


def test_transform_checks_shape_and_fit(rng):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        PixelScaler().transform(_images(rng, (2, 4)))
    scaler = PixelScaler().fit(_images(rng, (3, 4, 4)))
    with pytest.raises(ValueError, match="X has 15 features, but PixelScaler is expecting 16"):
        scaler.transform(_images(rng, (3, 5, 3)))
