"""The exceptions and warnings fastmlp raises, in one place so that callers (the command
line among them) test their class, never their text."""

__all__ = ["TrainingDivergedError", "TrainingInterruptedWarning"]


class TrainingDivergedError(ValueError):
    """Training produced an infinite or NaN loss or weights; the model was left unchanged.

    Usually the inputs are not scaled (see :class:`fastmlp.PixelScaler`) or the learning
    rate is too high.
    """


class TrainingInterruptedWarning(UserWarning):
    """``fit`` was interrupted (Ctrl-C); the model keeps every batch trained so far."""
