"""fastmlp's version, in one place: pyproject.toml reads it from here at build time
(scikit-build-core's regex metadata provider) and ``fastmlp.__version__`` imports it."""

__version__ = "0.1.0"
