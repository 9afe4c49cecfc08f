"""The exceptions and warnings fastmlp raises, in one place so that callers (the command
line among them) test their class, never their text."""

__all__ = ["PixelRangeWarning", "PrecisionWarning", "TrainingDivergedError",
           "TrainingInterruptedWarning"]


class TrainingDivergedError(ValueError):
    """Training produced an infinite or NaN loss or weights; the model was left unchanged.

    Usually the inputs are not scaled (see :class:`fastmlp.PixelScaler`) or the learning
    rate is too high.
    """


class TrainingInterruptedWarning(UserWarning):
    """``fit`` was interrupted (Ctrl-C); the model keeps every batch trained so far."""


class PixelRangeWarning(UserWarning):
    """:class:`fastmlp.PixelScaler` was fitted on data whose range does not fit its
    ``max_value``: integer-valued pixels whose maximum is at most a quarter of it (the
    images would be squeezed into a corner of the output range), or any pixel above it.
    The message gives the observed maximum and the ``max_value`` to use instead.
    """


class PrecisionWarning(UserWarning):
    """``precision="bfloat16"`` was asked for on a CPU without bfloat16 instructions
    (AVX512-BF16 or AMX-BF16, or with them turned off by ``FASTMLP_BF16_KERNEL``): the
    model trains and predicts in float32 instead, which is slower than bfloat16 would be
    but never less accurate.
    """
