"""fastmlp: fast multilayer perceptrons for images on the CPU, with a scikit-learn API.

- :class:`MLPImageClassifier` — the classifier; its training loop runs in C++/OpenMP.
- :class:`PixelScaler` — the pixel normalizations images need.
- :mod:`fastmlp.datasets` — IDX files, Fashion-MNIST and MNIST loaders.
- :mod:`fastmlp.kernels` — the compiled kernels on NumPy arrays.
- :func:`save`, :func:`load` (:mod:`fastmlp.io`) — a model file without pickle.
- :mod:`fastmlp.export` — the model as a scikit-learn ``MLPClassifier`` or in ONNX.
"""

from importlib import metadata as _metadata

from ._core import active_isa, detected_isa
from .exceptions import TrainingDivergedError, TrainingInterruptedWarning

# The version has one home, pyproject.toml; an installed fastmlp reads it from its metadata.
try:
    __version__ = _metadata.version("fastmlp")
except _metadata.PackageNotFoundError:  # imported from a build tree, never installed
    __version__ = "0+unknown"

__all__ = [
    "MLPImageClassifier",
    "PixelScaler",
    "TrainingDivergedError",
    "TrainingInterruptedWarning",
    "__version__",
    "active_isa",
    "detected_isa",
    "load",
    "save",
]


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
    if name in ("datasets", "export", "io", "kernels", "preprocessing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
