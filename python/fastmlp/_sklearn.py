"""scikit-learn's private helpers that fastmlp uses, with the types they lack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sklearn.base import _fit_context

_F = TypeVar("_F", bound=Callable[..., Any])


def fit_context(*, prefer_skip_nested_validation: bool) -> Callable[[_F], _F]:
    """scikit-learn's ``_fit_context`` decorator (it validates the parameters before a
    fit), typed so that type checkers see the decorated method's own signature."""
    return _fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)
