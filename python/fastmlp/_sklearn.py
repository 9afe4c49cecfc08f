"""scikit-learn's private helpers that fastmlp uses, with the types they lack."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any, TypeVar

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval

from ._stacklevel import WRAPPERS

_F = TypeVar("_F", bound=Callable[..., Any])


def fit_context(*, prefer_skip_nested_validation: bool) -> Callable[[_F], _F]:
    """scikit-learn's ``_fit_context`` decorator (it validates the parameters before a
    fit), typed so that type checkers see the decorated method's own signature. Its
    wrapper's frames count as fastmlp's for the warnings' stacklevel."""
    decorate = _fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)

    def apply(method: _F) -> _F:
        wrapped = decorate(method)
        WRAPPERS.add(wrapped.__code__)
        return wrapped

    return apply


class _Integers(Interval):
    """scikit-learn's ``Interval(Integral, ...)`` without bool: True is an Integral to
    Python, so ``n_threads=True`` passed as 1 thread and ``max_iter=True`` as 1 epoch."""

    def is_satisfied_by(self, val: object) -> bool:
        return not isinstance(val, bool) and super().is_satisfied_by(val)


def integers(low: int) -> Interval:
    """The parameter constraint of integers from ``low`` up, bool refused."""
    return _Integers(Integral, low, None, closed="left")
