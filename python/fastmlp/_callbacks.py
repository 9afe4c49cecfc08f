"""Callbacks during fit: scikit-learn's callback API (1.9 and later) and fastmlp's own
``fit(callback=...)``.

With scikit-learn's API, a fit is one task with one subtask per epoch, so
``sklearn.callback.ProgressBar`` shows epochs and ``ScoringMonitor`` scores the model at
the end of each, alone or nested under a meta-estimator such as ``GridSearchCV``. Where
``sklearn.callback`` is absent, :class:`CallbackSupportMixin` is an empty class and
:class:`FitTasks` does nothing.

Parameters are read once, when fit starts: a callback that changes one (say
``est.learning_rate_init *= 0.5``) would be silently ignored, so it is an error instead;
so is replacing a fitted attribute (``est.coefs_ = [...]``) from ``fit(callback=)``,
since training goes on from its own arrays.
"""

from __future__ import annotations

import numpy as np

try:
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # scikit-learn < 1.9

    class CallbackSupportMixin:  # type: ignore[no-redef]  # noqa: D101 (a stand-in)
        pass


__all__ = ["CallbackSupportMixin", "FitTasks", "TRANSIENT_ATTRIBUTES"]

# What scikit-learn's callback machinery keeps on the estimator during a fit: a failed
# fit must leave these for the machinery to tear down.
TRANSIENT_ATTRIBUTES = frozenset({"_callback_fit_ctx", "_skl_callbacks_to_teardown",
                                  "_parent_callback_ctx"})


class FitTasks:
    """The callbacks of one fit: ``fit(callback=...)`` and scikit-learn's callback tasks,
    with the parameter guard around every call."""

    def __init__(self, est, X, y, sample_weight, n_epochs, callback=None):
        self._est, self._X, self._y, self._callback = est, X, y, callback
        self._metadata = {"sample_weight": sample_weight}
        self._params = est.get_params(deep=False)
        self._epoch = None
        self._root = None
        if hasattr(est, "_init_callback_context"):
            self._root = est._init_callback_context(max_subtasks=n_epochs)
            self._root.call_on_fit_task_begin(estimator=est, X=X, y=y,
                                              metadata=self._metadata)

    def epoch_begins(self):
        if self._root is not None:
            self._epoch = self._root.subcontext(task_name="epoch")
            self._epoch.call_on_fit_task_begin(estimator=self._est)

    def progress(self, info):
        """fit(callback=)'s progress event, after a chunk of batches."""
        if self._callback is not None:
            self._callback(self._est, {"event": "progress", **info})
            self.check_parameters("the callback")

    def epoch_ends(self, entry, commit, fitted_attributes):
        """Run the epoch's callbacks; whether one asked to stop. commit() makes the run
        the estimator's fitted state (fit(callback=) sees the estimator itself);
        fitted_attributes() the attributes of a copy as of now (scikit-learn's).
        Replacing a committed attribute from the callback is an error, as changing a
        parameter is."""
        stop = False
        if self._callback is not None:
            committed = commit()
            layers = {k: _ids(committed[k]) for k in ("coefs_", "intercepts_")}
            stop = bool(self._callback(self._est, {"event": "epoch", **entry}))
            self.check_parameters("the callback")
            self.check_fitted(committed, layers, "the callback")
        if self._epoch is not None:
            stop = self._end(self._epoch, fitted_attributes) or stop
            self._epoch = None
        return stop

    def fit_ends(self, fitted_attributes):
        if self._root is not None:
            self._end(self._root, fitted_attributes)

    def _end(self, context, fitted_attributes):
        stop = context.call_on_fit_task_end(
            estimator=self._est, X=self._X, y=self._y, metadata=self._metadata,
            reconstruction_attributes=fitted_attributes)
        self.check_parameters("a callback")
        return stop

    def check_parameters(self, who):
        """ValueError if `who` changed a parameter of the estimator during fit."""
        now = self._est.get_params(deep=False)
        changed = [k for k, v in self._params.items() if not _same(v, now.get(k))]
        if changed:
            schedule = ("use learning_rate='adaptive' or 'cosine', or "
                        if {"learning_rate", "learning_rate_init"} & set(changed) else "")
            raise ValueError(
                f"{who} changed {', '.join(changed)} during fit, which would have no effect: "
                f"parameters are read when fit starts. To change "
                f"{'it' if len(changed) == 1 else 'them'} during training {schedule}stop "
                f"and continue with warm_start=True after set_params.")

    def check_fitted(self, committed, layers, who):
        """ValueError if `who` replaced a fitted attribute that commit() had set
        (``est.coefs_ = [...]``), or one of its weight or bias arrays
        (``est.coefs_[0] = ...``; ``layers`` are their ids as committed): training goes
        on with the run's own arrays, so the assignment would have no effect, or hand the
        core arrays it did not check. Changing the arrays' values in place is allowed."""
        missing = object()
        attributes = vars(self._est)
        changed = [k for k, v in committed.items() if attributes.get(k, missing) is not v]
        changed += [k for k, ids in layers.items()
                    if k not in changed and ids != _ids(committed[k])]
        if changed:
            raise ValueError(
                f"{who} replaced {', '.join(changed)} during fit, which would have no "
                "effect: training goes on from its own weights and state. Change values "
                "in place (est.coefs_[0][...] = ...), or stop training and set them "
                "before fitting again with warm_start=True.")


def _ids(arrays):
    return [id(a) for a in arrays]


def _same(a, b):
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(np.all(np.asarray(a == b)))
    except (TypeError, ValueError):
        return repr(a) == repr(b)
