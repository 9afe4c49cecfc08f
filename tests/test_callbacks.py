"""Callbacks during fit: scikit-learn's callback API and fit(callback=)."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from fastmlp import MLPImageClassifier

try:
    from sklearn import callback
except ImportError:
    callback = None
# The tests of scikit-learn's callback API; those of fit(callback=) run with any version.
sklearn_callbacks = pytest.mark.skipif(callback is None,
                                       reason="scikit-learn < 1.9 has no callbacks")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FIT = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)


def _data(rng, n=90):
    X = rng.normal(size=(n, 6)).astype(np.float32)
    return X, np.arange(n) % 3


class Recorder:
    """A FitCallback that records its hooks and can ask to stop after an epoch."""

    def __init__(self, stop_after=None, change=None):
        self.events, self.stop_after, self.change = [], stop_after, change

    def setup(self, estimator, context):
        self.events.append("setup")

    def teardown(self, estimator, context):
        self.events.append("teardown")

    def on_fit_task_begin(self, estimator, context):
        self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.events.append(("end", context.task_name, fitted_estimator.n_iter_))
        if self.change and context.task_name == "epoch":
            self.change(estimator)
        return self.stop_after is not None and fitted_estimator.n_iter_ >= self.stop_after


@sklearn_callbacks
def test_one_task_per_epoch_with_a_fitted_snapshot(rng):
    X, y = _data(rng)
    rec = Recorder()
    model = MLPImageClassifier(**FIT).set_callbacks(rec).fit(X, y)
    epochs = [e for e in rec.events if e[0] == "end" and e[1] == "epoch"]
    assert [e[2] for e in epochs] == [1, 2, 3]
    assert rec.events[0] == "setup" and rec.events[-1] == "teardown"
    assert rec.events[-2] == ("end", "fit", 3)
    assert model.n_iter_ == 3


@sklearn_callbacks
def test_a_callback_can_stop_training(rng):
    X, y = _data(rng)
    model = MLPImageClassifier(**dict(FIT, max_iter=10)).set_callbacks(
        Recorder(stop_after=2)).fit(X, y)
    assert model.n_iter_ == 2


@sklearn_callbacks
def test_scoring_monitor_scores_each_epoch(rng):
    X, y = _data(rng)
    monitor = callback.ScoringMonitor(scoring="accuracy")
    model = MLPImageClassifier(**FIT).set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert [r["task_id"] for r in epochs] == [0, 1, 2]
    fit_row = next(r for r in rows if r["task_name"] == "fit")
    assert fit_row["accuracy"] == pytest.approx(model.score(X, y))
    assert epochs[-1]["accuracy"] == pytest.approx(model.score(X, y))


@sklearn_callbacks
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_callbacks_nested_under_a_search(rng, n_jobs):
    pytest.importorskip("rich", reason="ProgressBar needs rich")
    X, y = _data(rng)
    search = GridSearchCV(MLPImageClassifier(**FIT), {"alpha": [1e-4, 1e-3]}, cv=2,
                          n_jobs=n_jobs)
    search.set_callbacks(callback.ProgressBar(max_propagation_depth=None))
    search.fit(X, y)
    assert search.best_estimator_.n_iter_ == 3


@sklearn_callbacks
def test_progress_bar_alone(rng):
    pytest.importorskip("rich", reason="ProgressBar needs rich")
    X, y = _data(rng)
    model = MLPImageClassifier(**FIT).set_callbacks(callback.ProgressBar()).fit(X, y)
    assert model.n_iter_ == 3


@sklearn_callbacks
def test_changing_a_parameter_from_a_callback_raises(rng):
    X, y = _data(rng)

    def halve(est):
        est.learning_rate_init *= 0.5

    model = MLPImageClassifier(**FIT).set_callbacks(Recorder(change=halve))
    with pytest.raises(ValueError, match="learning_rate_init during fit"):
        model.fit(X, y)
    assert not hasattr(model, "coefs_")

    def halve_in_fit_callback(est, info):
        if info["event"] == "epoch":
            est.learning_rate_init *= 0.5

    with pytest.raises(ValueError, match="the callback changed learning_rate_init") as info:
        MLPImageClassifier(**FIT).fit(X, y, callback=halve_in_fit_callback)
    assert "To change it during training use learning_rate='adaptive'" in str(info.value)

    def penalize(est, info):
        est.alpha = 1.0

    with pytest.raises(ValueError, match="the callback changed alpha during fit") as info:
        MLPImageClassifier(**FIT).fit(X, y, callback=penalize)
    assert "learning_rate" not in str(info.value)  # that advice is the learning rate's
    assert "To change it during training stop and continue with warm_start" in str(info.value)


@pytest.mark.parametrize("bad", [5, "print"])
def test_a_callback_that_is_not_a_function_is_refused_before_training(rng, bad):
    # It failed at the first chunk of batches: "'int' object is not callable".
    X, y = _data(rng)
    model = MLPImageClassifier(**FIT)
    with pytest.raises(TypeError, match=f"callback must be a function f\\(model, info\\) or "
                                        f"None, got {type(bad).__name__}"):
        model.fit(X, y, callback=bad)
    assert not hasattr(model, "coefs_")


@pytest.mark.parametrize("replace", [
    lambda est: setattr(est, "coefs_", [np.zeros_like(c) for c in est.coefs_]),
    lambda est: est.intercepts_.__setitem__(0, np.zeros_like(est.intercepts_[0])),
    lambda est: setattr(est, "n_iter_", 0),
], ids=["coefs_", "intercepts_[0]", "n_iter_"])
def test_replacing_a_fitted_attribute_from_the_fit_callback_raises(rng, replace):
    # Training went on from its own arrays: the assignment was silently ignored (or, for
    # an array of the list, handed to the core unchecked).
    X, y = _data(rng)

    def callback(est, info):
        if info["event"] == "epoch":
            replace(est)

    model = MLPImageClassifier(**FIT)
    with pytest.raises(ValueError, match=r"the callback replaced (coefs_|intercepts_|n_iter_)"
                                         r" during fit"):
        model.fit(X, y, callback=callback)
    assert not hasattr(model, "coefs_")


def test_the_fit_callback_may_change_weights_in_place(rng):
    X, y = _data(rng)

    def callback(est, info):
        if info["event"] == "epoch" and info["epoch"] == FIT["max_iter"]:
            est.coefs_[-1][...] = 0
            est.intercepts_[-1][...] = 0

    model = MLPImageClassifier(**FIT).fit(X, y, callback=callback)
    assert not model.coefs_[-1].any()
    np.testing.assert_allclose(model.predict_proba(X), 1 / len(model.classes_))


def test_predict_from_a_progress_callback_of_a_first_fit_is_not_fitted(rng):
    # It was an AttributeError: the fit had set n_features_in_ but no weights yet.
    from sklearn.exceptions import NotFittedError

    X, y = _data(rng)
    seen = []

    def callback(est, info):
        try:
            seen.append((info["event"], est.predict(X[:3]).shape))
        except NotFittedError:
            seen.append((info["event"], None))

    model = MLPImageClassifier(**FIT, batch_size=len(y))
    model.fit(X, y, callback=callback)
    assert seen[0] == ("progress", None)  # before the first epoch ended
    assert seen[1] == ("epoch", (3,))
    assert all(shape == (3,) for _, shape in seen[1:])  # later progress: the last epoch's
    with pytest.raises(NotFittedError):
        MLPImageClassifier(**FIT).fit(X, y, callback=lambda est, info: est.predict_proba(X))


def test_everything_works_without_sklearn_callback():
    code = (
        "import sys, sklearn.pipeline, sklearn.preprocessing, sklearn.model_selection\n"
        "sys.modules['sklearn.callback'] = None  # fastmlp's import of it now fails\n"
        "import numpy as np, warnings; warnings.simplefilter('ignore')\n"
        "from fastmlp import MLPImageClassifier\n"
        "X = np.random.RandomState(0).normal(size=(60, 5)).astype(np.float32)\n"
        "m = MLPImageClassifier(max_iter=2, random_state=0).fit(X, np.arange(60) % 2)\n"
        "assert not hasattr(m, 'set_callbacks'), 'the stand-in mixin has no API'\n"
        "print(m.n_iter_)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
