"""Pixel scaling for images before they reach an MLP.

Shape legend for this file:
    n  samples (images)
    H, W  image height and width
    C  channels (1 for grayscale)
    P  pixels per channel, H * W
    d  features per sample, H * W * C (the flattened image, in C order)
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._sklearn import fit_context
from ._stacklevel import user_stacklevel
from ._training import IMAGE_CHANNELS
from .exceptions import PixelRangeWarning

__all__ = ["PixelScaler"]

# max_value may be any float32 magnitude whose reciprocal, times 2 for "symmetric", is
# still finite in float32: smaller ones would scale every pixel to infinity.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MIN_MAX_VALUE = 2.0 / _FLOAT32_MAX

# Integer-valued data whose maximum is at most this fraction of max_value are taken for
# images of another bit depth (digits' 0..16, binary 0/1 masks) rather than dark 8-bit
# images: a dark subset of Fashion-MNIST or MNIST still reaches 255 somewhere.
_FAR_BELOW_FRACTION = 0.25

# Rows are processed in blocks of about this many values, so that the float64 working copy
# stays small (a few hundred kB) however large the data set is.
_BLOCK_VALUES = 1 << 16

# fit's self and result: a subclass's fit returns the subclass (typing.Self, spelled so on
# Python before 3.11).
_Self = TypeVar("_Self", bound="PixelScaler")


class PixelScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale image pixels to the small, centred range that MLP training needs.

    Every mode is an affine map ``(X - offset_) / scale_`` applied to each pixel and
    returns a float32 array of shape ``(n_samples, n_features)``:

    - ``"symmetric"``: ``X / (max_value / 2) - 1``, so ``[0, max_value]`` maps onto
      ``[-1, 1]`` (with the default ``max_value=255``: ``X / 127.5 - 1``).
    - ``"unit"``: ``X / max_value``, so ``[0, max_value]`` maps onto ``[0, 1]``.
    - ``"standard"``: ``(X - mean_) / scale_`` with the mean and standard deviation
      learned by :meth:`fit` over all pixels of the training images (one mean and one
      standard deviation), or over each channel separately when ``per_channel=True``.
      A channel that is constant in the training data gets ``scale_ = 1``, so its
      output stays finite.

    Images may be given as a 2-D array ``(n_samples, n_features)``, or as image arrays
    ``(n, H, W)`` (grayscale), ``(n, H, W, C)`` or ``(n, C, H, W)``; image arrays are
    flattened in C order to ``(n, H * W * C)``. Any real dtype is accepted, ``uint8``
    included; so are lists and pandas DataFrames.

    Parameters
    ----------
    mode : {"symmetric", "unit", "standard"}, default="symmetric"
        The scaling to apply (see above). ``"symmetric"`` and ``"unit"`` are fixed maps
        that need nothing from the data; ``"standard"`` learns its statistics in
        :meth:`fit`.

    per_channel : bool, default=False
        Only used when ``mode="standard"``. If False, one mean and one standard
        deviation are learned over all pixels. If True, one of each per channel; the
        channels are taken from the images' channel axis (see ``channel_axis``), and
        must be given with ``n_channels`` when the data are a 2-D array.

    n_channels : int, default=None
        Number of channels, used only when ``mode="standard"`` and ``per_channel=True``.
        Required for 2-D input, where each row is an image flattened in C order: with
        ``channel_axis=-1`` the channels are interleaved (feature ``j`` belongs to
        channel ``j % n_channels``, as when an ``(H, W, C)`` image is flattened); with
        ``channel_axis=1`` they are stored one after the other (feature ``j`` belongs to
        channel ``j // (n_features / n_channels)``, as when a ``(C, H, W)`` image is
        flattened). For image arrays it may be left as None; if set, it must match the
        images. A 3-D array ``(n, H, W)`` has one channel.

    channel_axis : {-1, 1}, default=-1
        Where the channels are in 4-D image arrays: ``-1`` for ``(n, H, W, C)``, ``1``
        for ``(n, C, H, W)``. It also tells how the channels are laid out in the rows of
        2-D input (see ``n_channels``). Only the per-channel statistics depend on it.
        With ``per_channel=True`` and ``n_channels=None``, :meth:`fit` raises a
        ``ValueError`` when the axis it names cannot hold channels (its size is not 1 to
        4) while the other one can: ``(n, 3, 32, 32)`` images read with
        ``channel_axis=-1`` would otherwise learn 32 "channels" over the image width.

    max_value : float, default=255.0
        The value of a full-intensity pixel, used by the ``"symmetric"`` and ``"unit"``
        modes: 255 for 8-bit images, 65535 for 16-bit ones, 1.0 for images already
        stored as floats in ``[0, 1]``. Values are not clipped: a pixel above
        ``max_value`` maps above the nominal range. Ignored by ``"standard"``. It must be
        finite and between about 5.9e-39 and 3.4e38, so that the scaling stays finite
        in float32; :meth:`fit` refuses other values with a ``ValueError``. :meth:`fit`
        also checks the training data against it and warns with
        :class:`~fastmlp.exceptions.PixelRangeWarning` when they do not fit (see Notes).

    Attributes
    ----------
    offset_ : ndarray of shape (n_stats,), dtype float64
        Value subtracted from each pixel: ``max_value / 2`` for ``"symmetric"``, 0 for
        ``"unit"``, the learned mean for ``"standard"``. ``n_stats`` is the number of
        channels when per-channel statistics are learned, otherwise 1.

    scale_ : ndarray of shape (n_stats,), dtype float64
        Divisor applied after the subtraction: ``max_value / 2``, ``max_value``, or the
        learned standard deviation (1 where it is zero).

    mean_ : ndarray of shape (n_stats,), dtype float64, or None
        Mean of the training pixels, globally or per channel. None unless
        ``mode="standard"``.

    var_ : ndarray of shape (n_stats,), dtype float64, or None
        Variance of the training pixels, globally or per channel. None unless
        ``mode="standard"``.

    n_features_in_ : int
        Number of features seen during :term:`fit` (``H * W * C`` for images).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X` has feature
        names that are all strings.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Standardizes each feature separately.
    sklearn.preprocessing.MinMaxScaler : Scales each feature to a given range.

    Notes
    -----
    Statistics are accumulated in float64 over blocks of rows, so fitting needs no
    float64 copy of the whole data set. The output is always float32, C-contiguous;
    the arithmetic is done in float64 and rounded once, so ``0`` and ``max_value`` map
    exactly to the ends of the range.

    In the ``"symmetric"`` and ``"unit"`` modes, :meth:`fit` compares the maximum of the
    training data with ``max_value`` and issues a
    :class:`~fastmlp.exceptions.PixelRangeWarning`, naming the observed maximum, when

    - the maximum exceeds ``max_value``: those pixels scale beyond the nominal range
      (legal, hence a warning and not an error); or
    - every value is a whole number (any integer or boolean dtype, or floats holding
      whole numbers) and the maximum is positive and at most ``max_value / 4``: pixel
      counts of another bit depth, such as scikit-learn's digits (0 to 16) or 0/1 masks
      with the default ``max_value=255``, which would all scale into a corner of the
      range. Dark 8-bit images still reach 255 somewhere and do not warn. Data with
      fractional values are not judged this way: they are as often features already
      scaled on purpose as images, and warning on them would be noise.

    The maximum is computed in one streaming pass and the whole-number test blockwise,
    so a memory-mapped data set larger than memory is read, never copied.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp.preprocessing import PixelScaler
    >>> images = np.array([[[0, 51], [204, 255]], [[255, 102], [153, 0]]], dtype=np.uint8)
    >>> PixelScaler().fit_transform(images)
    array([[-1. , -0.6,  0.6,  1. ],
           [ 1. , -0.2,  0.2, -1. ]], dtype=float32)
    >>> PixelScaler(mode="unit").fit_transform(images)
    array([[0. , 0.2, 0.8, 1. ],
           [1. , 0.4, 0.6, 0. ]], dtype=float32)
    >>> rgb = np.zeros((2, 1, 2, 3), dtype=np.uint8)
    >>> rgb[..., 0] = [[[10, 30]], [[10, 30]]]
    >>> scaler = PixelScaler(mode="standard", per_channel=True).fit(rgb)
    >>> scaler.mean_, scaler.scale_
    (array([20.,  0.,  0.]), array([10.,  1.,  1.]))
    >>> scaler.transform(rgb)
    array([[-1.,  0.,  0.,  1.,  0.,  0.],
           [-1.,  0.,  0.,  1.,  0.,  0.]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "mode": [StrOptions({"symmetric", "unit", "standard"})],
        "per_channel": ["boolean"],
        "n_channels": [Interval(Integral, 1, None, closed="left"), None],
        "channel_axis": [Options(Integral, {-1, 1})],
        "max_value": [Interval(Real, _MIN_MAX_VALUE, _FLOAT32_MAX, closed="both")],
    }

    def __init__(
        self,
        mode: Literal["symmetric", "unit", "standard"] = "symmetric",
        *,
        per_channel: bool = False,
        n_channels: int | None = None,
        channel_axis: Literal[-1, 1] = -1,
        max_value: float = 255.0,
    ) -> None:
        self.mode = mode
        self.per_channel = per_channel
        self.n_channels = n_channels
        self.channel_axis = channel_axis
        self.max_value = max_value

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self: _Self, X: ArrayLike, y: object = None) -> _Self:
        """Learn the number of features and, for ``mode="standard"``, the statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Training images, as rows or as image arrays (n, H, W), (n, H, W, C) or
            (n, C, H, W), which are flattened in C order.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted scaler.
        """
        if isinstance(self.n_channels, bool):  # an Integral, to the parameter check
            raise ValueError(f"n_channels must be a positive integer or None, got "
                             f"{self.n_channels!r}")
        X, image_channels = self._validate_input(X, reset=True)
        if self.mode != "standard":
            self._check_range(X)

        if self.mode == "symmetric":
            half = float(self.max_value) / 2.0
            self.offset_ = np.array([half])
            self.scale_ = np.array([half])
            self.mean_ = self.var_ = None
        elif self.mode == "unit":
            self.offset_ = np.array([0.0])
            self.scale_ = np.array([float(self.max_value)])
            self.mean_ = self.var_ = None
        else:
            n_stats = self._resolve_channels(X.shape[1], image_channels) if self.per_channel else 1
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                count, mean, var = _channel_moments(X, n_stats, self.channel_axis == -1)
            if not (np.isfinite(mean).all() and np.isfinite(var).all()):
                raise ValueError(
                    "X's values are too large for mode='standard': their variance "
                    f"overflows float64 (largest |value| {float(np.max(np.abs(X))):.3g})")
            self.mean_ = mean
            self.var_ = var
            self.offset_ = mean.copy()
            self.scale_ = _safe_scale(var, mean, count)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Scale images to float32.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images
            Images with ``n_features_in_`` values each, as rows or as image arrays
            (n, H, W), (n, H, W, C) or (n, C, H, W). With per-channel statistics,
            image arrays must have the channel count seen in :meth:`fit`.

        Returns
        -------
        X_scaled : ndarray of shape (n_samples, n_features), dtype float32
            Scaled pixels, C-contiguous.
        """
        check_is_fitted(self)
        X, image_channels = self._validate_input(X, reset=False)
        n_stats = self.scale_.shape[0]
        if n_stats > 1 and image_channels is not None and image_channels != n_stats:
            raise ValueError(
                f"X has {image_channels} channel(s), but {self.__class__.__name__} learned "
                f"per-channel statistics for {n_stats} channels."
            )
        offset, scale = self._per_feature(self.offset_, self.scale_)

        def scale_block(block):
            block -= offset
            block /= scale

        return _blockwise_to_float32(X, scale_block)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Map scaled values back to the original pixel scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features), dtype float32
            ``X * scale_ + offset_``, flattened like the output of :meth:`transform`.
        """
        check_is_fitted(self)
        rows: np.ndarray = check_array(X, dtype="numeric", input_name="X")
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {rows.shape[1]} features, but {self.__class__.__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        offset, scale = self._per_feature(self.offset_, self.scale_)

        def unscale_block(block):
            block *= scale
            block += offset

        return _blockwise_to_float32(rows, unscale_block)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        # The output is float32 whatever the input dtype.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- private helpers ----------------------------------------------------------------

    def _validate_input(self, X, *, reset) -> tuple[np.ndarray, int | None]:
        """Flatten image arrays to (n, d), then validate with scikit-learn's rules.

        Returns the validated 2-D array and the channel count read from the image shape,
        or None for 2-D input, whose channels cannot be seen.
        """
        if isinstance(X, (list, tuple)):
            X = np.asarray(X)
        # Array-likes without a shape (objects with __array__) are left to validate_data.
        ndim = getattr(X, "ndim", 2)
        image_channels = None
        if ndim in (3, 4):
            X = np.asarray(X)
            if ndim == 3:
                image_channels = 1
            else:
                axis = self.channel_axis
                # fit validated it; set_params may have changed it since.
                if isinstance(axis, bool) or not isinstance(axis, Integral) or axis not in (-1, 1):
                    raise ValueError(f"channel_axis must be -1 or 1, got {axis!r}")
                if reset and self.mode == "standard" and self.per_channel:
                    self._check_channel_axis(X.shape)
                image_channels = X.shape[axis]
            # reshape reads in C (row-major) order whatever the memory layout.
            X = X.reshape(X.shape[0], int(np.prod(X.shape[1:])))
        elif ndim > 4:
            raise ValueError(
                "Expected X of shape (n_samples, n_features), (n, H, W), (n, H, W, C) or "
                f"(n, C, H, W); got an array with {ndim} dimensions."
            )
        X = validate_data(self, X, reset=reset, dtype="numeric")
        return X, image_channels

    def _check_channel_axis(self, shape):
        """ValueError when ``channel_axis`` points at an axis of the 4-D ``shape`` that
        cannot hold channels while the other candidate axis can.

        Channels-first images (n, 3, 32, 32) read with ``channel_axis=-1`` would otherwise
        learn 32 "channels" over the image width. An explicit ``n_channels`` settles the
        question, so the check is skipped then.
        """
        if self.n_channels is not None:
            return
        axis, other = (-1, 1) if self.channel_axis == -1 else (1, -1)
        if shape[axis] in IMAGE_CHANNELS or shape[other] not in IMAGE_CHANNELS:
            return
        layout = "(n, C, H, W)" if other == 1 else "(n, H, W, C)"
        raise ValueError(
            f"per_channel=True with channel_axis={self.channel_axis} takes the channels "
            f"from axis {axis} of X, of size {shape[axis]}, which is not an image channel "
            f"count (1 to 4), while axis {other} has {shape[other]}: X of shape "
            f"{tuple(shape)} looks like {layout} images. Pass channel_axis={other}, or "
            f"n_channels={shape[axis]} if the images really have {shape[axis]} channels."
        )

    def _check_range(self, X):
        """PixelRangeWarning when X (n, d) does not fit ``max_value`` (see Notes).

        ``X.max()`` streams through the data (a memory-mapped array is read once, never
        copied); the whole-number test runs blockwise, and only when the maximum is low.
        """
        high = float(X.max())
        max_value = float(self.max_value)
        if high > max_value:
            message = (f"the data's maximum {high:g} exceeds max_value={max_value:g}, so "
                       f"those pixels scale beyond {self._nominal_range()}")
        elif 0 < high <= _FAR_BELOW_FRACTION * max_value and _integer_valued(X):
            message = (f"the data's maximum {high:g} is far below max_value={max_value:g}, "
                       f"so every pixel scales into a corner of {self._nominal_range()}")
        else:
            return
        warnings.warn(
            f"PixelScaler: {message}; if {high:g} is the full-intensity value of these "
            f"images, pass max_value={high:g}.",
            PixelRangeWarning,
            stacklevel=user_stacklevel(),
        )

    def _nominal_range(self):
        return "[-1, 1]" if self.mode == "symmetric" else "[0, 1]"

    def _resolve_channels(self, n_features, image_channels):
        """Number of channels for per-channel statistics, checked against the data."""
        if image_channels is None:
            if self.n_channels is None:
                raise ValueError(
                    "per_channel=True needs to know the channels, but X is 2-D "
                    f"(n_samples, {n_features}). Pass images of shape (n, H, W), "
                    "(n, H, W, C) or (n, C, H, W), or set n_channels (and channel_axis "
                    "to say how the channels are laid out in each row)."
                )
            channels = self.n_channels
        else:
            if self.n_channels is not None and self.n_channels != image_channels:
                axis = "last" if self.channel_axis == -1 else "second"
                raise ValueError(
                    f"n_channels={self.n_channels}, but the images have {image_channels} "
                    f"channel(s) on their {axis} axis (channel_axis={self.channel_axis})."
                )
            channels = image_channels
        if n_features % channels != 0:
            raise ValueError(
                f"n_channels={channels} does not divide the number of features "
                f"({n_features}): the rows of X cannot be images with {channels} channels."
            )
        return channels

    def _per_feature(self, *stats):
        """Expand per-channel arrays of shape (C,) to per-feature arrays of shape (d,)."""
        n_stats = stats[0].shape[0]
        if n_stats == 1:
            return tuple(s[0] for s in stats)
        per_channel = self.n_features_in_ // n_stats
        if self.channel_axis == -1:
            # (H, W, C) rows: the channel index runs fastest.
            return tuple(np.tile(s, per_channel) for s in stats)
        # (C, H, W) rows: one block of H * W features per channel.
        return tuple(np.repeat(s, per_channel) for s in stats)


def _block_rows(n_features):
    return max(1, _BLOCK_VALUES // max(1, n_features))


def _integer_valued(X):
    """Whether every value of X (n, d) is a whole number, as pixel counts are."""
    if X.dtype.kind in "biu":
        return True
    step = _block_rows(X.shape[1])
    for start in range(0, X.shape[0], step):
        block = np.asarray(X[start : start + step])
        if not np.array_equal(block, np.rint(block)):
            return False
    return True


def _channel_moments(X, n_channels, channels_last):
    """Count, mean and (population) variance per channel of X (n, d), in float64.

    The moments of each block of rows are merged with Chan et al.'s pairwise update,
    which stays accurate for large n where a running sum of squares would not.
    """
    n, d = X.shape
    count = 0
    mean = np.zeros(n_channels)
    m2 = np.zeros(n_channels)
    for start in range(0, n, _block_rows(d)):
        block = np.asarray(X[start : start + _block_rows(d)], dtype=np.float64, order="C")
        rows = block.shape[0]
        if channels_last:
            values = block.reshape(rows, d // n_channels, n_channels)  # (rows, P, C)
            axes = (0, 1)
            block_mean = values.mean(axis=axes)
            block_m2 = np.square(values - block_mean).sum(axis=axes)
        else:
            values = block.reshape(rows, n_channels, d // n_channels)  # (rows, C, P)
            axes = (0, 2)
            block_mean = values.mean(axis=axes)
            block_m2 = np.square(values - block_mean[:, None]).sum(axis=axes)
        block_count = rows * (d // n_channels)
        total = count + block_count
        delta = block_mean - mean
        mean = mean + delta * (block_count / total)
        m2 = m2 + block_m2 + np.square(delta) * (count * block_count / total)
        count = total
    return count, mean, m2 / count


def _safe_scale(var, mean, count):
    """Standard deviation, with 1 where the data are constant.

    Rounding in a float64 mean of ``count`` equal values can leave a spurious spread of
    up to about ``count * eps * |mean|``; anything that small counts as constant, so a
    constant channel maps to ~0 rather than to amplified rounding noise.
    """
    eps = np.finfo(np.float64).eps
    constant = var <= np.square(count * eps * mean)
    return np.where(constant, 1.0, np.sqrt(var))


def _blockwise_to_float32(X, update):
    """Apply ``update`` in place to float64 copies of blocks of rows of X (n, d).

    Returns the result as a new float32 C-contiguous (n, d) array: the arithmetic is done
    in float64 and rounded to float32 once, without a float64 copy of the whole of X.
    """
    n, d = X.shape
    out = np.empty((n, d), dtype=np.float32)
    step = _block_rows(d)
    for start in range(0, n, step):
        block = np.array(X[start : start + step], dtype=np.float64, order="C")
        update(block)
        _check_float32_range(block, start)
        out[start : start + step] = block
    return out


def _check_float32_range(block, first_row):
    """ValueError when scaled values would round to infinity in float32.

    The input is finite (validation refuses NaN and infinity), so only the scaling can
    overflow: pixels far beyond ``max_value``, or far from the training data relative to
    a tiny learned standard deviation.
    """
    peak = max(block.max(initial=0.0), -block.min(initial=0.0))  # no temporary array
    if peak > _FLOAT32_MAX:
        row = first_row + int(np.argmax(np.abs(block).max(axis=1)))
        raise ValueError(
            f"PixelScaler: row {row} scales to {peak:.3g}, beyond the float32 range "
            f"(+-{_FLOAT32_MAX:.3g}); the data are far outside the range this scaler was "
            f"set up or fitted for (check max_value, or fit on data like this)"
        )
