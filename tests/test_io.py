"""fastmlp.save / fastmlp.load: the pickle-free model file."""

import doctest
import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp
import fastmlp.io
from fastmlp import MLPImageClassifier, PixelScaler

one_epoch = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def make_data(rng, n=240, d=36, n_classes=3):
    """uint8 "images" whose class (of about equal counts) is told by the mean of a band
    of pixels."""
    X = rng.integers(0, 256, size=(n, d)).astype(np.uint8)
    band = X[:, : d // 4].mean(axis=1)
    y = np.digitize(band, np.quantile(band, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


def quick(**params):
    return MLPImageClassifier(**{"hidden_layer_sizes": (12, 8), "max_iter": 2,
                                 "random_state": 0, **params})


def fitted_attributes(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def assert_same_value(a, b, where=""):
    """Equal, bitwise for arrays and floats, of the same types all the way down."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b)):
            assert_same_value(x, z, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same_value(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


@pytest.fixture
def data(rng):
    return make_data(rng)


@one_epoch
@pytest.mark.parametrize("labels", ["int", "str", "object"])
def test_a_loaded_classifier_is_the_saved_one(tmp_path, data, labels):
    X, y = data
    y = {"int": y * 10 - 3, "str": np.array(["cat", "dog", "emu"])[y],
         "object": np.array(["cat", "dog", "emu"], dtype=object)[y]}[labels]
    clf = quick(early_stopping=True, dropout=0.1).fit(X / 255.0, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path)
    loaded = fastmlp.load(path)
    assert type(loaded) is MLPImageClassifier
    assert_same_value(loaded.get_params(), clf.get_params(), "params")
    assert_same_value(fitted_attributes(loaded), fitted_attributes(clf), "fitted")
    np.testing.assert_array_equal(loaded.predict_proba(X / 255.0), clf.predict_proba(X / 255.0))
    np.testing.assert_array_equal(loaded.predict(X / 255.0), clf.predict(X / 255.0))
    assert loaded._optimizer_state is None  # not saved by default


@one_epoch
@pytest.mark.parametrize("build", [
    lambda: make_pipeline(PixelScaler(mode="standard"), quick()),
    lambda: Pipeline([("scaler", PixelScaler(mode="unit")), ("clf", quick(solver="sgd"))]),
    lambda: Pipeline([("scaler", "passthrough"), ("clf", quick())]),
], ids=["make_pipeline", "named steps", "passthrough"])
def test_a_loaded_pipeline_predicts_bitwise_the_same(tmp_path, data, build):
    X, y = data
    model = build().fit(X, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(model, path)
    loaded = fastmlp.load(path)
    assert [name for name, _ in loaded.steps] == [name for name, _ in model.steps]
    for (_, a), (_, b) in zip(loaded.steps, model.steps):
        assert type(a) is type(b)
        if not isinstance(a, str):
            assert_same_value(fitted_attributes(a), fitted_attributes(b), type(a).__name__)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("params", [
    {"solver": "adam", "dropout": 0.2},
    {"solver": "sgd", "momentum": 0.9, "learning_rate_init": 0.05},
    {"solver": "adam", "learning_rate": "cosine", "warmup_epochs": 0.5, "random_shift": 1,
     "image_shape": (6, 6)},
], ids=["adam+dropout", "sgd+momentum", "cosine+shift"])
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_training_continues_bitwise_with_the_optimizer_state(tmp_path, data, params, how):
    X, y = data
    X = X / 255.0
    with pytest.warns(ConvergenceWarning):
        original = quick(max_iter=1, **params).fit(X, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(original, path, include_optimizer_state=True)
    resumed = fastmlp.load(path)

    def go_on(est):
        if how == "partial_fit":
            return est.partial_fit(X, y)
        with pytest.warns(ConvergenceWarning):
            return est.set_params(warm_start=True, max_iter=2).fit(X, y)

    go_on(original), go_on(resumed)
    assert resumed.n_iter_ == original.n_iter_ > 1
    assert_same_value(resumed.coefs_, original.coefs_, "coefs_")
    assert_same_value(resumed.intercepts_, original.intercepts_, "intercepts_")
    assert_same_value(resumed.loss_curve_, original.loss_curve_, "loss_curve_")
    assert resumed._optimizer_state.t == original._optimizer_state.t


def test_without_the_optimizer_state_the_file_is_the_parameters_and_training_restarts(
        tmp_path, data):
    X, y = data
    X = X / 255.0
    clf = quick(hidden_layer_sizes=(256, 128)).partial_fit(X, y, classes=[0, 1, 2])
    param_bytes = sum(a.nbytes for a in clf.coefs_ + clf.intercepts_)
    small, full = tmp_path / "small.fastmlp", tmp_path / "full.fastmlp"
    fastmlp.save(clf, small)
    fastmlp.save(clf, full, include_optimizer_state=True)
    assert param_bytes < os.path.getsize(small) < 1.05 * param_bytes + 16384
    assert os.path.getsize(full) > 2.9 * param_bytes  # Adam's two moments per parameter

    restarted, resumed = fastmlp.load(small), fastmlp.load(full)
    np.testing.assert_array_equal(restarted.predict_proba(X), clf.predict_proba(X))
    steps_per_epoch = clf._optimizer_state.t
    for est in (clf, restarted, resumed):
        est.partial_fit(X, y)
    assert restarted._optimizer_state.t == steps_per_epoch  # Adam's step count restarted
    assert clf._optimizer_state.t == resumed._optimizer_state.t == 2 * steps_per_epoch
    assert not np.array_equal(restarted.coefs_[0], clf.coefs_[0])
    np.testing.assert_array_equal(resumed.coefs_[0], clf.coefs_[0])


def test_feature_names_random_states_and_nested_estimators_round_trip(tmp_path, data):
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X / 255.0, columns=[f"px{i}" for i in range(X.shape[1])])
    clf = quick(random_state=np.random.RandomState(7), class_weight={0: 1.0, 1: 2.5, 2: 1.0})
    clf.partial_fit(frame, y, classes=[0, 1, 2])
    # A fitted PixelScaler held as an attribute (as an input scaler would be) is saved
    # nested, whatever attribute holds it.
    clf.input_scaler_ = PixelScaler(mode="standard").fit(X)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path, include_optimizer_state=True)
    loaded = fastmlp.load(path)
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, clf.feature_names_in_)
    assert loaded.class_weight == {0: 1.0, 1: 2.5, 2: 1.0}
    assert isinstance(loaded.random_state, np.random.RandomState)
    assert loaded.random_state.randint(1 << 30) == clf.random_state.randint(1 << 30)
    assert isinstance(loaded.input_scaler_, PixelScaler)
    assert_same_value(fitted_attributes(loaded.input_scaler_),
                      fitted_attributes(clf.input_scaler_), "input_scaler_")
    np.testing.assert_array_equal(loaded.predict_proba(frame), clf.predict_proba(frame))


def test_every_private_attribute_of_a_fitted_classifier_is_known(data):
    # A private attribute the estimator gains must be saved (PRIVATE_STATE) or declared
    # transient here; otherwise a loaded model could not continue training.
    transient = set()
    X, y = data
    with pytest.warns(ConvergenceWarning):
        clf = quick(early_stopping=True, dropout=0.1).fit(X / 255.0, y)
    private = {k for k in vars(clf) if k.startswith("_")}
    assert private - transient == set(fastmlp.io.PRIVATE_STATE["MLPImageClassifier"])


@one_epoch
def test_the_image_shape_fit_saw_is_kept_and_older_files_still_load(tmp_path, data):
    X, y = data
    images = (X / 255.0).reshape(len(X), 6, 3, 2)
    clf = quick().fit(images, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path)
    loaded = fastmlp.load(path)
    assert loaded.image_shape_in_ == (6, 3, 2)
    with pytest.raises(ValueError, match=r"fitted on images of shape \(6, 3, 2\)"):
        loaded.predict(images.reshape(len(X), 2, 6, 3))
    np.testing.assert_array_equal(loaded.predict_proba(images), clf.predict_proba(images))
    # A file written before fastmlp kept image_shape_in_ loads, and its model takes
    # images of any shape of its width, as it did then.
    rewrite(path, edit_header=lambda h: fitted(h).pop("image_shape_in_"))
    old = fastmlp.load(path)
    assert getattr(old, "image_shape_in_", None) is None
    np.testing.assert_array_equal(old.predict_proba(images.reshape(len(X), 2, 6, 3)),
                                  clf.predict_proba(X / 255.0))
    assert old.partial_fit(images.reshape(len(X), 3, 12), y).n_iter_ == 3
    # One that does not hold the model's features is refused, like any inconsistency.
    fastmlp.save(clf, path)
    rewrite(path, edit_header=lambda h: fitted(h).update(
        image_shape_in_={"__tuple__": [6, 3, 3]}))
    with pytest.raises(ValueError, match=r"image_shape_in_ \(6, 3, 3\) does not hold 36"):
        fastmlp.load(path)
    rewrite(path, edit_header=lambda h: fitted(h).update(image_shape_in_=[6, 6]))
    with pytest.raises(ValueError, match="image_shape_in_ is not None or a tuple"):
        fastmlp.load(path)


@one_epoch
def test_pickle_and_joblib_keep_working(tmp_path, data):
    X, y = data
    clf = quick().fit(X / 255.0, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path, include_optimizer_state=True)
    loaded = fastmlp.load(path)
    for copy in (pickle.loads(pickle.dumps(loaded)), joblib.load(_joblib(tmp_path, loaded))):
        np.testing.assert_array_equal(copy.predict_proba(X / 255.0), clf.predict_proba(X / 255.0))


def _joblib(tmp_path, obj):
    path = tmp_path / "model.joblib"
    joblib.dump(obj, path)
    return path


@one_epoch
def test_what_cannot_be_saved_is_refused(tmp_path, data):
    X, y = data
    path = tmp_path / "model.fastmlp"
    with pytest.raises(TypeError, match="LogisticRegression"):
        fastmlp.save(LogisticRegression(max_iter=1000).fit(X / 255.0, y), path)
    with pytest.raises(TypeError, match="StandardScaler"):
        fastmlp.save(make_pipeline(StandardScaler(), quick()).fit(X, y), path)
    with pytest.raises(NotFittedError):
        fastmlp.save(quick(), path)
    clf = quick().partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(TypeError, match="JSON-serializable"):
        fastmlp.save(clf, path, metadata={"when": object()})
    clf.custom_ = object()
    with pytest.raises(TypeError, match=r"model\.custom_"):
        fastmlp.save(clf, path)
    assert not os.listdir(tmp_path)  # nothing written, not even a temporary file


def test_a_failed_save_leaves_the_previous_file(tmp_path, data, monkeypatch):
    X, y = data
    clf = quick().partial_fit(X, y, classes=[0, 1, 2])
    path = tmp_path / "model.fastmlp"
    path.write_bytes(b"the previous model")

    def savez_half(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_half)
    with pytest.raises(OSError, match="No space"):
        fastmlp.save(clf, path)
    assert path.read_bytes() == b"the previous model"
    assert os.listdir(tmp_path) == ["model.fastmlp"]


# -- files that must be refused ----------------------------------------------------------


@pytest.fixture
def saved(tmp_path, data):
    X, y = data
    clf = quick().partial_fit(X / 255.0, y, classes=[0, 1, 2])
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path, include_optimizer_state=True)
    return path


def rewrite(path, edit_header=None, drop=None, arrays=None, edit_text=None):
    """Rewrite the archive at path with its header edited (as JSON values and/or as
    text), one member dropped and/or arrays replaced ({name: array})."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    if drop is not None:
        del members[drop]
    for name, a in (arrays or {}).items():
        buffer = io.BytesIO()
        np.save(buffer, a)
        members[name + ".npy"] = buffer.getvalue()
    if edit_header is not None or edit_text is not None:
        with np.load(path) as npz:
            header = json.loads(npz["header"].tobytes())
        (edit_header or (lambda h: None))(header)
        text = (edit_text or (lambda t: t))(json.dumps(header)).encode()
        tmp = path.with_suffix(".npy")
        np.save(tmp, np.frombuffer(text, dtype=np.uint8))
        members["header.npy"] = tmp.read_bytes()
        tmp.unlink()
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)


def classifier_node(header):
    return header["model"]


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.update(format_version=fastmlp.io.FORMAT_VERSION + 1),
     "upgrade fastmlp"),
    (lambda h: h.update(format="something-else"), "not a fastmlp model file"),
    (lambda h: h.pop("model"), "has no 'model'"),
    (lambda h: h["model"].update({"class": "os.system"}), "names the class 'os.system'"),
    (lambda h: h["model"]["params"].update(no_such_param=1), "no parameter no_such_param"),
    (lambda h: h["model"]["fitted"].update(fit=1), "'fit', which is not a fitted one"),
    (lambda h: h["model"]["fitted"].update(__class__=1), "not a fitted one"),
    (lambda h: h["model"]["fitted"].update(x_={"__pickle__": "..."}), "unknown value tag"),
    (lambda h: h["model"]["fitted"]["coefs_"].pop(), "do not chain"),
    (lambda h: h["model"]["fitted"].update(n_features_in_=35), "do not chain"),
], ids=["newer version", "other format", "no model", "other class", "unknown parameter",
        "method name", "dunder", "unknown tag", "missing layer", "wrong feature count"])
def test_a_bad_header_is_refused(saved, edit, message):
    rewrite(saved, edit_header=edit)
    with pytest.raises(ValueError, match=message):
        fastmlp.load(saved)


CLI_METADATA = {
    "dataset": "fashion-mnist", "target_names": ["a", "b", "c"], "image_shape": [6, 6],
    "architecture": "36-8(ReLU)-3", "history": [{"epoch": 1, "loss": 1.0}],
    "final": {"test_accuracy": 0.5},
    "config": {"dataset": "fashion-mnist", "data_dir": None, "hidden": [8],
               "activation": "relu", "init": "pytorch", "normalize": "symmetric",
               "solver": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False, "alpha": 0.0,
               "batch_size": 64, "epochs": 1, "early_stopping": False, "patience": 10,
               "seed": 0, "threads": None, "preset": None, "lr_schedule": "constant",
               "warmup_epochs": 0.0, "dropout": 0.0, "weight_decay": 0.0,
               "label_smoothing": 0.0, "random_shift": 0, "random_flip": False,
               "precision": "float32"},
}


@pytest.mark.parametrize("edit, message", [
    (lambda m: [1, 2], r"it must be an object \(a dict\), got a list"),
    (lambda m: "notes", r"it must be an object \(a dict\), got a string"),
    (lambda m: m.update(history=None), "history must be a list of objects, got null"),
    (lambda m: m.update(history=[1]), "history must be a list of objects, got \\[1\\]"),
    (lambda m: m.update(image_shape="abc"), 'image_shape must be null or a list of 2 or 3 '
                                            'positive integers, got "abc"'),
    (lambda m: m.update(image_shape=[28, 0]), "image_shape must be"),
    (lambda m: m.update(target_names=5), "target_names must be a list of strings, got 5"),
    (lambda m: m.update(config=[]), "config must be an object"),
    (lambda m: m["config"].update(activation="bogus"),
     r"config.activation must be one of 'identity', .*, got \"bogus\""),
    (lambda m: m["config"].update(dataset=3), "config.dataset must be a string"),
    (lambda m: m["config"].update(hidden=[2**31]), "config.hidden must be a list of layer"),
    (lambda m: m["config"].update(seed=-1),
     r"config.seed must be null or an integer in \[0, 4294967295\]"),
    (lambda m: m["config"].update(lr=0), r"config.lr must be a number in \(0, inf\]"),
    (lambda m: m["config"].update(epochs=True), "config.epochs must be an integer >= 1"),
    (lambda m: m["config"].update(nesterov=1), "config.nesterov must be true or false"),
    (lambda m: m["config"].update(threads="4"), "config.threads must be null or an integer"),
], ids=["list", "string", "history null", "history of numbers", "image_shape string",
        "image_shape zero", "target_names number", "config list", "activation", "dataset",
        "hidden", "seed", "lr", "epochs bool", "nesterov int", "threads string"])
def test_corrupt_metadata_is_refused_on_load_and_on_save(tmp_path, saved, edit, message):
    # These loaded, then failed deep inside fastmlp train --resume or predict.
    metadata = json.loads(json.dumps(CLI_METADATA))
    metadata = edit(metadata) or metadata
    rewrite(saved, edit_header=lambda h: h.update(metadata=metadata))
    with pytest.raises(ValueError, match=f"has corrupt metadata: {message}"):
        fastmlp.load(saved, return_metadata=True)
    model = quick().partial_fit(np.eye(36, dtype=np.float32), np.arange(36) % 3,
                                classes=[0, 1, 2])
    target = tmp_path / "new.fastmlp"
    with pytest.raises(ValueError, match=f"metadata: {message}"):
        fastmlp.save(model, target, metadata=metadata)
    assert not target.exists()


def test_metadata_of_the_command_line_and_of_users_round_trips(tmp_path, saved):
    model = fastmlp.load(saved)
    for metadata in (CLI_METADATA, {"note": [1, None], "config": {"mine": object.__name__}},
                     {}):
        fastmlp.save(model, saved, metadata=metadata)
        assert fastmlp.load(saved, return_metadata=True)[1] == metadata
    rewrite(saved, edit_header=lambda h: h.update(metadata=None))
    assert fastmlp.load(saved, return_metadata=True)[1] == {}


def test_metadata_choices_are_the_command_lines():
    from fastmlp import cli

    train = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    choices = {a.dest: set(a.choices) for a in train._actions if a.choices}
    for key, (check, what) in fastmlp.io.CONFIG_KEYS.items():
        if key in choices and what.startswith("one of"):  # not dataset or preset
            assert {c for c in choices[key] if check(c)} == choices[key], key
            assert not check("no-such-choice"), key
            assert what.count("'") == 2 * len(choices[key]), key


def fitted(header):
    return header["model"]["fitted"]


def optimizer_state(header):
    return fitted(header)["_optimizer_state"]["__optimizer_state__"]


# Each edit makes a file that np.load and json read, but whose model is not one that
# fitting could leave: prediction or training would hand it to the core inconsistent
# (a random state past its keys crashed NumPy's generator; NaN weights predicted
# classes_[0] for every image).
@pytest.mark.parametrize("edit, message", [
    (lambda h: fitted(h)["_rng"]["__random_state__"].__setitem__(2, 625),
     "_rng is not a random state"),
    (lambda h: fitted(h)["_rng"]["__random_state__"].__setitem__(0, "PCG64"),
     "_rng is not a random state"),
    (lambda h: fitted(h).update(_noise_seed=-1), "_noise_seed is not None or a seed"),
    (lambda h: fitted(h).update(n_iter_=-3), "n_iter_ is not a count"),
    (lambda h: fitted(h).update(t_=1.5), "t_ is not a count"),
    (lambda h: fitted(h).update(loss_curve_="low"), "loss_curve_ is not a list"),
    (lambda h: fitted(h).update(n_outputs_=2), "n_outputs_=2 do not match"),
    (lambda h: fitted(h).update(out_activation_="identity"), "out_activation_ is not"),
    (lambda h: fitted(h).pop("n_iter_"), "lacks the fitted attribute.* n_iter_"),
    (lambda h: fitted(h).pop("classes_"), "lacks the fitted attribute.* classes_"),
    (lambda h: fitted(h).update(classes_=[2, 1, 0]), "classes_ is not a sorted"),
    (lambda h: h["model"]["params"].update(activation="bogus"), "'activation' parameter"),
    (lambda h: h["model"]["params"].update(batch_size=0), "'batch_size' parameter"),
    (lambda h: h["model"]["params"].update(random_shift=-3), "'random_shift' parameter"),
    (lambda h: optimizer_state(h).update(steps=2**70), "corrupt"),
    (lambda h: optimizer_state(h).update(solver="lbfgs"), "_optimizer_state does not fit"),
    (lambda h: optimizer_state(h).update(schedule_t0=10**6), "_optimizer_state does not"),
    (lambda h: optimizer_state(h)["slots"]["first_moment"]["__tuple__"][0].pop(),
     "_optimizer_state does not fit"),
], ids=["rng position", "rng kind", "noise seed", "n_iter_", "t_", "loss curve",
        "n_outputs_", "out_activation_", "no n_iter_", "no classes_", "unsorted classes",
        "activation", "batch size", "random shift", "step overflow", "solver",
        "schedule start", "slot missing"])
def test_a_model_that_fitting_cannot_leave_is_refused(saved, edit, message):
    rewrite(saved, edit_header=edit)
    with pytest.raises(ValueError, match=message):
        fastmlp.load(saved)


def test_a_header_nested_too_deeply_is_refused(saved):
    # json.loads gives up (RecursionError) long before 100 000 levels.
    depth = 100_000
    rewrite(saved, edit_text=lambda text: text.replace(
        '"fitted": {', '"fitted": {"deep_": ' + "[" * depth + "]" * depth + ", ", 1))
    with pytest.raises(ValueError, match="its header is not JSON"):
        fastmlp.load(saved)


@pytest.mark.parametrize("array, value, message", [
    ("model.coefs_.0", np.nan, "coefs_ is not a list of finite float32"),
    ("model.intercepts_.1", np.inf, "intercepts_ is not a list of finite"),
    ("model._optimizer_state.slots.second_moment.0.0", np.nan,
     "_optimizer_state does not fit"),
])
def test_non_finite_weights_are_refused(saved, array, value, message):
    with np.load(saved) as npz:
        a = npz[array].copy()
    a.flat[0] = value
    rewrite(saved, arrays={array: a})
    with pytest.raises(ValueError, match=message):
        fastmlp.load(saved)


def test_weights_of_another_dtype_or_shape_are_refused(saved):
    with np.load(saved) as npz:
        a = npz["model.coefs_.0"]
    rewrite(saved, arrays={"model.coefs_.0": a.astype(np.float64)})
    with pytest.raises(ValueError, match="coefs_ is not a list of finite float32"):
        fastmlp.load(saved)
    rewrite(saved, arrays={"model.coefs_.0": a[:, :-1]})
    with pytest.raises(ValueError, match="do not chain"):
        fastmlp.load(saved)


@one_epoch
def test_a_pipeline_of_other_steps_or_widths_is_refused(tmp_path, data):
    X, y = data
    pipe = make_pipeline(PixelScaler(), quick()).fit(X, y)
    path = tmp_path / "pipe.fastmlp"
    fastmlp.save(pipe, path)

    def swap_steps(h):
        steps = h["model"]["params"]["steps"]
        steps.reverse()

    rewrite(path, edit_header=swap_steps)
    with pytest.raises(ValueError, match="ends in an MLPImageClassifier"):
        fastmlp.load(path)
    fastmlp.save(pipe, path)
    rewrite(path, edit_header=lambda h: h["model"]["params"]["steps"][0]["__tuple__"][1][
        "__estimator__"]["fitted"].update(n_features_in_=35))
    with pytest.raises(ValueError, match="do not fit 35 features|not fitted to the same"):
        fastmlp.load(path)
    fastmlp.save(pipe, path)
    rewrite(path, edit_header=lambda h: h["model"]["params"]["steps"][0]["__tuple__"][1][
        "__estimator__"]["fitted"].update(scale_={"__array__": "model.steps.1.1.coefs_.0"}))
    with pytest.raises(ValueError, match="scale_ is not"):
        fastmlp.load(path)


def test_an_unfitted_model_is_refused(saved):
    rewrite(saved, edit_header=lambda h: h["model"].update(fitted={}))
    with pytest.raises(ValueError, match="not fitted"):
        fastmlp.load(saved)


def test_a_crafted_random_state_no_longer_crashes_training(saved, data, tmp_path):
    """Run in a child: before the check, the next partial_fit crashed the process."""
    rewrite(saved, edit_header=lambda h: fitted(h)["_rng"]["__random_state__"].__setitem__(
        2, 10**6))
    script = ("import sys, fastmlp\n"
              "try:\n    fastmlp.load(sys.argv[1])\n"
              "except ValueError as e:\n    print('refused:', e)\n")
    result = subprocess.run([sys.executable, "-c", script, str(saved)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "refused:" in result.stdout, result.stderr


def test_a_missing_array_is_refused(saved):
    with zipfile.ZipFile(saved) as z:
        name = next(n for n in z.namelist() if "coefs_" in n)
    rewrite(saved, drop=name)
    with pytest.raises(ValueError, match=f"array '{name[:-4]}' .* is missing"):
        fastmlp.load(saved)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_file_is_refused(saved, cut):
    content = saved.read_bytes()
    saved.write_bytes(content[: int(cut * len(content))])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        fastmlp.load(saved)


def test_a_damaged_array_is_refused(saved):
    content = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = next(i for i in z.infolist() if "coefs_.0" in i.filename)
    content[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside its data
    saved.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="corrupt"):
        fastmlp.load(saved)


def test_an_array_declaring_more_than_it_holds_is_refused_before_allocation(saved):
    # A damaged shape in an array's header: NumPy set out to allocate 37 GiB.
    with zipfile.ZipFile(saved) as z:
        members = {name: z.read(name) for name in z.namelist()}
    name = next(n for n in members if "coefs_.0" in n)
    data = members[name]
    length = int.from_bytes(data[8:10], "little")  # .npy format 1.0: the header's length
    header = data[10:10 + length].decode("latin1")
    shape = re.search(r"'shape': (\([^)]*\))", header).group(1)
    header = header.replace(shape, "(100000, 100000)").ljust(length - 1)[:length - 1] + "\n"
    members[name] = data[:10] + header.encode("latin1") + data[10 + length:]
    with zipfile.ZipFile(saved, "w") as z:
        for member, content in members.items():
            z.writestr(member, content)
    held = len(data) - 10 - length
    with pytest.raises(ValueError, match=re.escape(
            f"declares {4 * 10**10} bytes of values, but holds {held}")):
        fastmlp.load(saved)


def test_random_damage_is_refused_or_harmless(saved, rng):
    # Bytes changed anywhere in the file: a ValueError, or (where the change hits bytes
    # nothing reads) the same model. A damaged zip header gave NotImplementedError
    # ("That compression method is not supported").
    original = saved.read_bytes()
    X = rng.random((20, fastmlp.load(saved).n_features_in_), dtype=np.float32)
    expected = fastmlp.load(saved).predict_proba(X)
    outcomes = set()
    for _ in range(300):
        damaged = bytearray(original)
        for i in rng.integers(0, len(damaged), size=rng.integers(1, 4)):
            damaged[i] = rng.integers(0, 256)
        saved.write_bytes(bytes(damaged))
        try:
            proba = fastmlp.load(saved).predict_proba(X)
        except ValueError:
            outcomes.add("refused")
        else:
            np.testing.assert_array_equal(proba, expected)
            outcomes.add("harmless")
    assert "refused" in outcomes


def test_pickles_and_other_files_are_refused(tmp_path, data):
    X, y = data
    clf = quick().partial_fit(X, y, classes=[0, 1, 2])
    cases = {"model.joblib": lambda p: joblib.dump(clf, p),
             "array.npy": lambda p: np.save(p, np.zeros(3)),
             "other.npz": lambda p: np.savez(p, weights=np.zeros(3)),
             "text.txt": lambda p: p.write_text("not a model")}
    for name, write in cases.items():
        write(tmp_path / name)
        with pytest.raises(ValueError, match="not a fastmlp model file"):
            fastmlp.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fastmlp.load(tmp_path / "missing.fastmlp")


def test_the_names_are_lazy_and_listed():
    assert fastmlp.save is fastmlp.io.save and fastmlp.load is fastmlp.io.load
    assert {"save", "load"} <= set(dir(fastmlp)) and {"save", "load"} <= set(fastmlp.__all__)


def test_docstring_examples():
    result = doctest.testmod(fastmlp.io, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("mode", ["symmetric", "standard"])
def test_a_classifier_that_scales_its_own_input_round_trips(tmp_path, data, mode):
    X, y = data  # uint8: the core applies the fitted input_scaler_ itself
    clf = quick(input_scaler=PixelScaler(mode=mode)).partial_fit(X, y, classes=[0, 1, 2])
    path = tmp_path / "model.fastmlp"
    fastmlp.save(clf, path, include_optimizer_state=True)
    loaded = fastmlp.load(path)
    assert type(loaded.input_scaler) is PixelScaler and loaded.input_scaler.mode == mode
    assert_same_value(fitted_attributes(loaded.input_scaler_),
                      fitted_attributes(clf.input_scaler_), "input_scaler_")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert_same_value(loaded.coefs_, clf.coefs_, "coefs_")
