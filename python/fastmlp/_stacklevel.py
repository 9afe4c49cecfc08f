"""The ``stacklevel`` that makes a warning point at the user's line, not inside fastmlp.

A fixed ``stacklevel`` counts frames that depend on the path to the warning (``fit``,
``_fit``, ``_fit_steps``, ``_train_epochs`` ... or ``partial_fit``, or a PixelScaler
fitted by the estimator's ``input_scaler``), so it named a file of fastmlp as often as
the user's. :func:`user_stacklevel` walks the stack instead, as pandas'
``find_stack_level`` does.
"""

from __future__ import annotations

import os
import sys

__all__ = ["WRAPPERS", "user_stacklevel"]

_PACKAGE = os.path.dirname(__file__) + os.sep
# The code of scikit-learn's _fit_context wrapper, which fastmlp puts around its own fit
# methods (``_sklearn.fit_context`` adds it): its frames are part of fastmlp's call.
WRAPPERS: set = set()


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the caller of this function that
    names the first frame outside fastmlp: the user's line, or the nearest frame of
    another library's code between the user and fastmlp (scikit-learn's
    ``Pipeline.fit``, say). fastmlp's frames are those of its files, the wrappers above,
    and the methods scikit-learn's mixins give fastmlp's estimators
    (``PixelScaler.fit_transform``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _in_fastmlp(frame):
        frame, level = frame.f_back, level + 1
    return level


def _in_fastmlp(frame):
    code = frame.f_code
    if code.co_filename.startswith(_PACKAGE) or code in WRAPPERS:
        return True
    sklearn = sys.modules.get("sklearn")
    if (sklearn is None or not code.co_argcount or code.co_varnames[0] != "self"
            or not code.co_filename.startswith(os.path.dirname(sklearn.__file__) + os.sep)):
        return False
    return any(cls.__module__.partition(".")[0] == "fastmlp"
               for cls in type(frame.f_locals.get("self")).__mro__)
