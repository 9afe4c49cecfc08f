"""fastmlp: fast multilayer perceptrons for images on the CPU, with a scikit-learn API.

- :class:`MLPImageClassifier` — the classifier; its training loop runs in C++/OpenMP.
- :class:`PixelScaler` — the pixel normalizations images need.
- :mod:`fastmlp.datasets` — IDX files, Fashion-MNIST and MNIST loaders.
- :mod:`fastmlp.kernels` — the compiled kernels on NumPy arrays.
- :func:`save`, :func:`load` (:mod:`fastmlp.io`) — a model file without pickle.
- :mod:`fastmlp.export` — the model as a scikit-learn ``MLPClassifier`` or in ONNX.
"""

import os as _os
import typing as _typing
import warnings as _warnings

from . import _core
from ._core import active_isa, detected_isa
from ._version import __version__  # the one home of the version; pyproject.toml reads it
from .exceptions import (
    PixelRangeWarning,
    PrecisionWarning,
    TrainingDivergedError,
    TrainingInterruptedWarning,
)

__all__ = [
    "MLPImageClassifier",
    "PixelRangeWarning",
    "PrecisionWarning",
    "PixelScaler",
    "TrainingDivergedError",
    "TrainingInterruptedWarning",
    "__version__",
    "active_isa",
    "detected_isa",
    "load",
    "save",
]

if _typing.TYPE_CHECKING:  # what __getattr__ serves, as type checkers cannot run it
    from . import datasets, export, io, kernels, preprocessing  # noqa: F401
    from .estimator import MLPImageClassifier
    from .io import load, save
    from .preprocessing import PixelScaler


# Hidden from type checkers, which see the imports above instead, so that a misspelt
# name is an error to them rather than an untyped attribute.
if not _typing.TYPE_CHECKING:
    def __getattr__(name):
        # The estimator, PixelScaler and the submodules load on first use: importing
        # scikit-learn takes seconds, and the command line imports it inside its Ctrl-C
        # handling rather than before it.
        if name == "MLPImageClassifier":
            from .estimator import MLPImageClassifier

            return MLPImageClassifier
        if name == "PixelScaler":
            from .preprocessing import PixelScaler

            return PixelScaler
        if name in ("save", "load"):
            from . import io

            return getattr(io, name)
        if name in _LAZY_SUBMODULES:
            import importlib

            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


# Loaded by __getattr__ on first use; listed by dir() before that, for tab completion.
_LAZY_SUBMODULES = ("datasets", "export", "io", "kernels", "preprocessing")


def __dir__():
    return sorted({*globals(), *__all__, *_LAZY_SUBMODULES})


def _warn_ignored_kernel_choice():
    # FASTMLP_ISA and FASTMLP_BF16_KERNEL only lower the kernels' choice, and the core
    # ignores a name it does not know: say so rather than run something else unasked.
    for variable, active, detected in (
            ("FASTMLP_ISA", _core.active_isa, _core.detected_isa),
            ("FASTMLP_BF16_KERNEL", _core.active_bf16_kernel, _core.detected_bf16_kernel)):
        asked = _os.environ.get(variable, "")
        if asked and asked != active():
            _warnings.warn(
                f"{variable}={asked!r} was ignored: it can only lower the choice to a known "
                f"name, and this CPU's best is {detected()!r}; fastmlp uses {active()!r}",
                RuntimeWarning, stacklevel=3)


_warn_ignored_kernel_choice()
