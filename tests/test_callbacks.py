"""Callbacks during fit: scikit-learn's callback API and fit(callback=)."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from fastmlp import MLPImageClassifier

callback = pytest.importorskip("sklearn.callback", reason="scikit-learn < 1.9 has no callbacks")

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


def test_one_task_per_epoch_with_a_fitted_snapshot(rng):
    X, y = _data(rng)
    rec = Recorder()
    model = MLPImageClassifier(**FIT).set_callbacks(rec).fit(X, y)
    epochs = [e for e in rec.events if e[0] == "end" and e[1] == "epoch"]
    assert [e[2] for e in epochs] == [1, 2, 3]
    assert rec.events[0] == "setup" and rec.events[-1] == "teardown"
    assert rec.events[-2] == ("end", "fit", 3)
    assert model.n_iter_ == 3


def test_a_callback_can_stop_training(rng):
    X, y = _data(rng)
    model = MLPImageClassifier(**dict(FIT, max_iter=10)).set_callbacks(
        Recorder(stop_after=2)).fit(X, y)
    assert model.n_iter_ == 2


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


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_callbacks_nested_under_a_search(rng, n_jobs):
    pytest.importorskip("rich", reason="ProgressBar needs rich")
    X, y = _data(rng)
    search = GridSearchCV(MLPImageClassifier(**FIT), {"alpha": [1e-4, 1e-3]}, cv=2,
                          n_jobs=n_jobs)
    search.set_callbacks(callback.ProgressBar(max_propagation_depth=None))
    search.fit(X, y)
    assert search.best_estimator_.n_iter_ == 3


def test_progress_bar_alone(rng):
    pytest.importorskip("rich", reason="ProgressBar needs rich")
    X, y = _data(rng)
    model = MLPImageClassifier(**FIT).set_callbacks(callback.ProgressBar()).fit(X, y)
    assert model.n_iter_ == 3


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

    with pytest.raises(ValueError, match="the callback changed learning_rate_init"):
        MLPImageClassifier(**FIT).fit(X, y, callback=halve_in_fit_callback)


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
