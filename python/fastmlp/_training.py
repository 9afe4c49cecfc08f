"""The state of one training run and the bookkeeping around the core's batch loop.

``MLPImageClassifier._fit`` reads as a sequence of steps over these: a :class:`Run`
holds the parameters, the optimizer state, the random generator and the
:class:`FitRecord` of fitted attributes; :class:`EpochTotals` sums the core's chunk
results over an epoch; :class:`ChunkSizer` keeps calls into the core about a quarter of a
second long (so Ctrl-C and progress bars answer quickly); :class:`BestWeights` keeps
early stopping's best parameters. Nothing here touches the estimator: it commits a run
onto itself when training succeeds.
"""

from __future__ import annotations

import math
import mmap
import os
import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from . import _core
from ._memory import cache_aligned
from ._optim import OptimizerState
from ._stacklevel import user_stacklevel
from .exceptions import PrecisionWarning

__all__ = ["FLOAT32_BELOW_ONE", "FLOAT32_MAX", "FLOAT32_TINY", "IMAGE_CHANNELS", "BestWeights",
           "ChunkSizer", "EpochTotals", "FitRecord", "ReadAhead", "Run", "TrainingData",
           "core_precision", "epoch_order", "float32_normal", "float32_range_text",
           "float32_rate", "image_geometry", "penalty_overshoot", "train_options"]

# float32's range of positive normal numbers: the precision the core computes in.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_normal(value, zero_ok=False):
    """(whether ``value`` rounded to float32 is finite and at least FLOAT32_TINY, or
    exactly 0 where ``zero_ok``; the rounded value). A parameter the core computes with
    in float32 must pass: one that is 0 or subnormal there (a learning rate of 1e-320)
    trains nothing, and one beyond its range (1e300) is infinite there."""
    with np.errstate(over="ignore", under="ignore"):
        single = float(np.float32(value))
    ok = math.isfinite(single) and (single >= FLOAT32_TINY or (zero_ok and value == 0))
    return ok, single


def float32_range_text(zero_ok=False):
    """The range ``float32_normal`` accepts, as text: "1.18e-38 to 3.4e+38"."""
    return f"{FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}{', or 0' if zero_ok else ''}"


# The largest float32 below 1: a rate (dropout, label smoothing) the core takes in float32
# must be at most this, since 1 - 1e-9 rounds to 1.0 there (drop everything, or learn
# against uniform targets).
FLOAT32_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))


def float32_rate(value):
    """(whether ``value`` rounded to float32 is below 1; the rounded value)."""
    single = float(np.float32(value))
    return single < 1.0, single


def penalty_overshoot(alpha, learning_rate, batch_size):
    """``learning_rate * alpha / batch_size``, the share of the weights one SGD step of the
    L2 penalty alone takes off them (the penalty is divided by the batch's weight), when
    ``alpha`` is to blame for a divergence; else None. From 1 on the step overshoots
    zero, and from 2 on it grows the weights whatever the data. Only an ``alpha`` of 1 or
    more is blamed: below it, a step that large comes from a far too large learning
    rate."""
    step = float(learning_rate) * float(alpha) / max(int(batch_size), 1)
    return step if alpha >= 1 and step >= 1 else None


# Samples per call into the core before the first timing is known; later chunks are sized
# to take about CHUNK_SECONDS so Ctrl-C and progress reports stay responsive.
FIRST_CHUNK_SAMPLES = 4096
CHUNK_SECONDS = 0.25
# shuffle="block" permutes blocks of about this many bytes of X, then the rows inside
# each: a block is read from disk once per epoch, in one piece, instead of row by row.
SHUFFLE_BLOCK_BYTES = 32 << 20


@dataclass
class FitRecord:
    """The fitted attributes a run advances; the estimator's ``<name>_`` attributes."""

    n_iter: int = 0
    t: int = 0
    loss_curve: list = field(default_factory=list)
    history: list = field(default_factory=list)
    best_loss: float | None = np.inf
    no_improvement_count: int = 0
    validation_scores: list | None = None
    validation_loss_curve: list | None = None
    best_validation_score: float | None = None

    @classmethod
    def of(cls, est):
        """A copy of a fitted estimator's record (lists copied: an error leaves it)."""
        def copied(v):
            return None if v is None else list(v)

        return cls(
            n_iter=est.n_iter_, t=est.t_, loss_curve=list(est.loss_curve_),
            history=list(est.history_), best_loss=est.best_loss_,
            no_improvement_count=est._no_improvement_count,
            validation_scores=copied(est.validation_scores_),
            validation_loss_curve=copied(est.validation_loss_curve_),
            best_validation_score=est.best_validation_score_)


@dataclass
class TrainingData:
    """The samples trained on: X as the core reads it (float32 C-contiguous rows, or a
    ``_core.PixelInput`` scaled while gathered), encoded labels, optional weights, and
    which rows of X the samples are (all of them, in order, when ``rows`` is None)."""

    X: np.ndarray | _core.PixelInput
    y: np.ndarray  # int32 in [0, n_classes)
    sample_weight: np.ndarray | None
    rows: np.ndarray | None = None  # int64 (n,) indices into X
    batch_size: int = 0
    given_weight: np.ndarray | None = None  # float64 (n_X,): fit's sample_weight, as given
    rows_per_block: int = 1  # of shuffle="block"
    read_ahead: ReadAhead | None = None  # of shuffle="block" on a memory-mapped X

    def x_rows(self, samples):
        """The rows of X that these samples are."""
        return samples if self.rows is None else self.rows[samples]

    @property
    def n(self):
        return self.y.shape[0]


@dataclass
class ValidationData:
    """Early stopping's validation samples: rows ``rows`` of X (all of it when None),
    their encoded labels and weights."""

    X: np.ndarray | _core.PixelInput
    rows: np.ndarray | None  # int64 indices into X
    y: np.ndarray
    sample_weight: np.ndarray | None = None  # float64


class EpochTotals:
    """The core's chunk results summed over an epoch, in the array the core adds each
    chunk's sums to itself (so an interrupt cannot separate them from the weights)."""

    def __init__(self):
        self.values = np.zeros(4)  # loss_sum, weight_sum, n_correct, n_samples

    loss_sum = property(lambda self: float(self.values[0]))
    weight_sum = property(lambda self: float(self.values[1]))
    n_correct = property(lambda self: int(self.values[2]))
    n_samples = property(lambda self: int(self.values[3]))

    @property
    def loss(self):
        """Mean training loss per unit of sample weight (with the L2 term)."""
        return self.loss_sum / max(self.weight_sum, 1e-300)

    @property
    def accuracy(self):
        return self.n_correct / max(self.n_samples, 1)

    def epoch_loss(self):
        return float(self.loss_sum / self.weight_sum) if self.weight_sum > 0 else 0.0


@dataclass
class Run:
    """Everything one call of ``fit``/``partial_fit`` trains and records."""

    classes: np.ndarray
    coefs: list
    intercepts: list
    optimizer: OptimizerState
    rng: np.random.RandomState
    record: FitRecord
    epoch_totals: EpochTotals | None = None  # the epoch in progress
    noise_seed: int | None = None  # of dropout masks and augmentations, drawn once
    input_scaler: object = None  # the fitted PixelScaler the core applies, or None

    def finite(self):
        return all(np.isfinite(c).all() for c in self.coefs)


class ChunkSizer:
    """Chunk lengths (in samples, whole batches) that take about CHUNK_SECONDS each."""

    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.samples = max(batch_size, FIRST_CHUNK_SAMPLES // batch_size * batch_size)
        self._t0 = 0.0

    def start(self):
        self._t0 = time.perf_counter()

    def done(self, n_samples):
        """Re-size the next chunk from how long this one of n_samples took."""
        per_sample = (time.perf_counter() - self._t0) / max(1, n_samples)
        self.samples = max(self.batch_size, int(CHUNK_SECONDS / max(per_sample, 1e-9))
                           // self.batch_size * self.batch_size)


@dataclass
class BestWeights:
    """Early stopping's best validation metric and a copy of its parameters."""

    metric: float | None = None
    coefs: list | None = None
    intercepts: list | None = None

    def improved(self, metric, tol):
        """Whether metric beats the best by at least tol (any metric beats none)."""
        return self.metric is None or metric >= self.metric + tol

    def offer(self, metric, coefs, intercepts):
        """Keep a copy of the parameters if metric is the best so far."""
        if self.metric is None or metric > self.metric:
            self.metric = metric
            self.coefs = [cache_aligned(c) for c in coefs]
            self.intercepts = [cache_aligned(b) for b in intercepts]

    def restore(self, run):
        if self.coefs is not None:
            run.coefs[:], run.intercepts[:] = self.coefs, self.intercepts


def block_rows(X):
    """Rows of X (n, d) per block of shuffle="block"."""
    row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
    return max(1, SHUFFLE_BLOCK_BYTES // row_bytes)


def epoch_order(rng, n, shuffle, rows_per_block):
    """int64 (n,): the order of an epoch's samples. True: a permutation; "block": the
    blocks of rows_per_block consecutive samples permuted, then the samples inside each
    block (the last block may be shorter); False: in order."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    if shuffle != "block":
        return rng.permutation(n).astype(np.int64, copy=False)
    starts = rng.permutation(-(-n // rows_per_block)) * rows_per_block
    return np.concatenate([start + rng.permutation(min(rows_per_block, n - start))
                           for start in starts]).astype(np.int64, copy=False)


class ReadAhead:
    """Asks the OS to read the file behind a memory-mapped X ahead of the core, a block of
    rows at a time (posix_fadvise WILLNEED), so shuffled reads of a file larger than the
    page cache wait on the disk far less. Does nothing for X in memory."""

    def __init__(self, X, rows_per_block):
        self.rows_per_block = rows_per_block
        self._file = _mapped_file(X) if hasattr(os, "posix_fadvise") else None
        self._row_bytes = X.shape[1] * X.dtype.itemsize
        self._asked = set()

    def new_epoch(self):
        self._asked.clear()

    def advise(self, rows):
        """Ask once per epoch for each block that the given rows of X fall in (the file
        is opened only then: a few times per epoch)."""
        if self._file is None:
            return
        blocks = [b for b in np.unique(np.asarray(rows) // self.rows_per_block)
                  if b not in self._asked]
        if not blocks:
            return
        path, offset = self._file
        length = self.rows_per_block * self._row_bytes
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # advice only: the core reads through the mapping anyway
            self._file = None
            return
        try:
            for b in blocks:
                os.posix_fadvise(fd, offset + int(b) * length, length, os.POSIX_FADV_WILLNEED)
                self._asked.add(b)
        finally:
            os.close(fd)


def _mapped_file(X):
    """(path, byte offset in it of X's first row) when X is C-contiguous memory of a
    file mapped by np.memmap (the array np.memmap created, not a view, knows its file
    offset), else None."""
    root = X
    while root is not None and not isinstance(getattr(root, "base", None), mmap.mmap):
        root = getattr(root, "base", None)
    if not isinstance(root, np.memmap) or root.filename is None or not X.flags.c_contiguous:
        return None
    delta = X.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return root.filename, root.offset + delta


# Channel counts that images have (grayscale, grayscale with alpha, RGB, RGBA): how the
# augmentations and PixelScaler tell which axis of a 4-D array holds the channels. One
# tuple for both, so that they never read the same images in different layouts.
IMAGE_CHANNELS = (1, 2, 3, 4)


def image_geometry(X, image_shape):
    """(H, W, C, channels_first) of X's images, or None when X is rows of unknown shape.

    ``image_shape`` ((H, W) or (H, W, C), channels last) wins; otherwise 3-D X is
    (n, H, W) and 4-D X is (n, H, W, C), or (n, C, H, W) when its second axis looks like
    channels (a count in IMAGE_CHANNELS) and its last does not.
    """
    if image_shape is not None:
        shape = tuple(image_shape)
        if len(shape) not in (2, 3) or not all(
                isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in shape):
            raise ValueError(f"image_shape must be (H, W) or (H, W, C) of positive integers, "
                             f"got {image_shape!r}")
        shape = tuple(int(v) for v in shape)
        if (len(shape) == 3 and shape[0] in IMAGE_CHANNELS
                and shape[2] not in IMAGE_CHANNELS):
            # Rows in (C, H, W) order read as (H, W, C) would shift across channels.
            raise ValueError(
                f"image_shape={shape} looks like (C, H, W); image_shape is channels last, "
                f"(H, W, C). For rows in (C, H, W) order pass X as (n, C, H, W) images "
                f"(X.reshape(-1, {shape[0]}, {shape[1]}, {shape[2]})) and no image_shape")
        return (*shape, 1, False) if len(shape) == 2 else (*shape, False)
    ndim = getattr(X, "ndim", 2)
    if ndim == 3:
        return (X.shape[1], X.shape[2], 1, False)
    if ndim == 4:
        if X.shape[1] in IMAGE_CHANNELS and X.shape[3] not in IMAGE_CHANNELS:
            return (X.shape[2], X.shape[3], X.shape[1], True)
        return (X.shape[1], X.shape[2], X.shape[3], False)
    return None


def _dropout_rates(dropout, n_hidden):
    """The core's per-layer dropout rates: a float applies to every hidden layer, a
    sequence holds one rate per hidden layer. A positive rate with no hidden layer (softmax
    regression) has nothing to drop and is refused, as is a sequence of another length."""
    try:
        rates = np.asarray(dropout, dtype=float)
    except (TypeError, ValueError):
        rates = np.zeros((0, 0))
    scalar = rates.ndim == 0
    rates = np.atleast_1d(rates)
    if rates.ndim != 1 or (not scalar and rates.size != n_hidden):
        raise ValueError(f"dropout must be a float or one rate per hidden layer "
                         f"({n_hidden}), got {dropout!r}")
    if not np.all((rates >= 0) & (rates < 1)):
        raise ValueError(f"dropout rates must lie in [0, 1), got {dropout!r}")
    if np.any(rates.astype(np.float32) >= 1):
        raise ValueError(f"dropout rates must be below 1 once rounded to float32, the "
                         f"precision the model trains in (at most {FLOAT32_BELOW_ONE:.8g}), "
                         f"got {dropout!r}")
    if n_hidden == 0 and np.any(rates > 0):
        raise ValueError(f"dropout={dropout!r} drops hidden units, but hidden_layer_sizes="
                         f"() has no hidden layer; use dropout=0.0 for softmax regression")
    rates = np.broadcast_to(rates, (n_hidden,))
    return [float(r) for r in rates] if np.any(rates > 0) else []


def core_precision(precision, warn=True):
    """The precision the core computes in for a model's ``precision``: "bfloat16" only
    where bfloat16 products run on hardware (else float32, with a PrecisionWarning)."""
    if precision != "bfloat16" or _core.bf16_hardware():
        return precision
    if warn:
        warnings.warn(
            f"precision='bfloat16' needs a CPU with AVX512-BF16 or AMX-BF16 (the bfloat16 "
            f"kernel here: {_core.active_bf16_kernel()!r}); computing in float32 instead",
            PrecisionWarning, stacklevel=user_stacklevel())
    return "float32"


def train_options(est, run, n_features, n_hidden, geometry):
    """The core's TrainOptions for this fit: dropout, label smoothing, augmentation and
    the seed of their random draws (drawn from the run's generator the first time any of
    them is on, so fits without them draw exactly what they always drew)."""
    o = _core.TrainOptions()
    o.precision = getattr(_core.Precision, core_precision(est.precision))
    o.dropout = _dropout_rates(est.dropout, n_hidden)
    o.label_smoothing = float(est.label_smoothing)
    if est.random_shift or est.random_flip:
        if geometry is None:
            raise ValueError("random_shift and random_flip need the images' shape: pass X as "
                             "(n, H, W) or (n, H, W, C) images, or set image_shape")
        values = math.prod(geometry[:3])
        if values != n_features:
            raise ValueError(f"image_shape {geometry[:3]} holds {values} values, but X has "
                             f"{n_features} features")
        if est.random_shift >= max(geometry[:2]):
            raise ValueError(f"random_shift={est.random_shift} must be smaller than the "
                             f"images, which are {geometry[0]}x{geometry[1]} pixels")
        o.image = tuple(int(v) for v in geometry[:3]) + (bool(geometry[3]),)
        o.random_shift, o.random_flip = int(est.random_shift), bool(est.random_flip)
    if o.dropout or o.random_shift or o.random_flip:
        if run.noise_seed is None:
            run.noise_seed = int(run.rng.randint(0, 2**63 - 1, dtype=np.int64))
        o.seed = run.noise_seed
    return o
