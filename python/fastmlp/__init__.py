"""fastmlp: fast multilayer perceptrons for images on the CPU, with a scikit-learn API."""

from ._core import active_isa, detected_isa

__version__ = "0.1.0"

__all__ = ["__version__", "active_isa", "detected_isa"]
