"""A pytest plugin that runs scikit-learn's own MLP tests against fastmlp.

Loaded with ``-p sklearn_mlp_plugin`` by ``tests/test_sklearn_mlp_suite.py`` (it is not a
test module). Before scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is
imported, ``sklearn.neural_network.MLPClassifier`` is made ``fastmlp.MLPImageClassifier``,
so the module's ``from sklearn.neural_network import MLPClassifier`` and its
``parametrize`` lists hold fastmlp's estimator; scikit-learn's own is put back once the
module is collected. Cases that do not use the classifier (fastmlp has no regressor)
are deselected. Each case's outcome is written as JSON to the file named by
``FASTMLP_SKLEARN_OUTCOMES``.
"""

import json
import os

import fastmlp

_ORIGINAL = {}


def pytest_configure(config):
    import sklearn.neural_network

    _ORIGINAL["MLPClassifier"] = sklearn.neural_network.MLPClassifier
    sklearn.neural_network.MLPClassifier = fastmlp.MLPImageClassifier
    config.pluginmanager.register(_Recorder(), "fastmlp_sklearn_recorder")


def _names(code):
    """The global names a function's code (and the code nested in it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def _uses_classifier(item):
    """Whether the case exercises fastmlp's classifier: through a parameter, or (when no
    parameter names an estimator class) through the module's global name."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    from sklearn.base import BaseEstimator

    classes = [v for v in params.values()
               if isinstance(v, type) and issubclass(v, BaseEstimator)]
    if classes:
        return fastmlp.MLPImageClassifier in classes
    return "MLPClassifier" in _names(item.function.__code__)


def pytest_collection_modifyitems(session, config, items):
    import sklearn.neural_network

    sklearn.neural_network.MLPClassifier = _ORIGINAL["MLPClassifier"]
    keep = [item for item in items if _uses_classifier(item)]
    deselected = [item for item in items if not _uses_classifier(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = keep


class _Recorder:
    """Each case's outcome, the worst of its phases (a failing setup or teardown fails
    the case too), with the last line of the failure for the report."""

    def __init__(self):
        self.outcomes = {}

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.split("::", 1)[-1]
        seen = self.outcomes.get(name)
        if seen is not None and seen["outcome"] == "failed":
            return
        if report.failed or report.skipped or report.when == "call":
            message = ""
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                message = (crash.message if crash is not None
                           else str(report.longrepr).strip().splitlines()[-1])[:300]
            self.outcomes[name] = {"outcome": report.outcome, "message": message}

    def pytest_sessionfinish(self, session):
        path = os.environ.get("FASTMLP_SKLEARN_OUTCOMES")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.outcomes, f, indent=1, sort_keys=True)
