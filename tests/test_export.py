"""fastmlp.export: the fitted model as a scikit-learn MLPClassifier and as ONNX."""

import copy
import doctest
import sys

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp.export
from fastmlp import MLPImageClassifier, PixelScaler
from fastmlp.export import to_onnx, to_sklearn

ACTIVATIONS = ["relu", "logistic", "tanh", "identity"]


def make_data(rng, n=300, shape=(6, 6, 1), n_classes=3):
    """uint8 images whose class (of about equal counts) is told by a band of pixels."""
    X = rng.integers(0, 256, size=(n, int(np.prod(shape)))).astype(np.uint8)
    band = X[:, : X.shape[1] // 4].mean(axis=1)
    y = np.digitize(band, np.quantile(band, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


def fitted(kind, activation, n_classes, rng, labels=None):
    """A fitted model of the given kind, with its training data."""
    shape = (6, 6, 3) if kind == "per-channel" else (6, 6, 1)
    X, y = make_data(rng, shape=shape, n_classes=n_classes)
    if labels is not None:
        y = np.asarray(labels)[y]
    # Batches larger than the few rows to_sklearn fits scikit-learn's model on.
    clf = MLPImageClassifier((16, 8), activation=activation, random_state=0,
                             learning_rate_init=0.01, batch_size=32)
    if kind == "classifier":
        X = X / 255.0
        return clf.partial_fit(X, y, classes=np.unique(y)), X
    scaler = {"symmetric": PixelScaler(),
              "per-channel": PixelScaler(mode="standard", per_channel=True, n_channels=3),
              "unit": PixelScaler(mode="unit")}[kind].fit(X)
    clf.partial_fit(scaler.transform(X), y, classes=np.unique(y))
    clf.partial_fit(scaler.transform(X), y)
    if kind == "unit":  # named steps and a passthrough step
        return Pipeline([("none", "passthrough"), ("px", scaler), ("mlp", clf)]), X
    return make_pipeline(scaler, clf), X


def decided(proba, margin=1e-4):
    """Rows whose two largest probabilities differ by more than margin: there both
    models must predict the same label."""
    top = np.sort(proba, axis=1)
    return top[:, -1] - top[:, -2] > margin


KINDS = ["classifier", "symmetric", "per-channel", "unit"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_classes", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_to_sklearn_gives_the_same_probabilities(rng, kind, n_classes, activation):
    model, X = fitted(kind, activation, n_classes, rng)
    exported = to_sklearn(model)
    expected = model.predict_proba(X)
    got = exported.predict_proba(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    rows = decided(expected)
    np.testing.assert_array_equal(exported.predict(X)[rows], model.predict(X)[rows])

    mlp = exported if kind == "classifier" else exported[-1]
    assert type(mlp) is MLPClassifier and mlp.activation == activation
    clf = model if kind == "classifier" else model[-1]
    assert mlp.n_iter_ == clf.n_iter_ and mlp.loss_curve_ == clf.loss_curve_
    if n_classes == 2:  # one logistic unit where fastmlp has a 2-unit softmax
        assert mlp.n_outputs_ == 1 and mlp.coefs_[-1].shape == (8, 1)
        assert mlp.out_activation_ == "logistic"
    if kind != "classifier":
        assert [n for n, _ in exported.steps] == [n for n, _ in model.steps]
        assert [type(s) for _, s in exported.steps[:-1]] == [
            str if s == "passthrough" else StandardScaler for _, s in model.steps[:-1]]


# The bare classifier is trained on floats in [0, 1]; the pipelines take uint8 pixels.
INPUTS = [(kind, dtype) for kind in KINDS for dtype in ("uint8", "float32", "float64")
          if not (kind == "classifier" and dtype == "uint8")]


@pytest.mark.parametrize("kind, input_dtype", INPUTS)
@pytest.mark.parametrize("n_classes", [2, 4], ids=["binary", "multiclass"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_gives_the_same_probabilities(rng, kind, n_classes, activation,
                                                   input_dtype):
    ort = pytest.importorskip("onnxruntime")
    model, X = fitted(kind, activation, n_classes, rng)
    X = X.astype(input_dtype)
    session = ort.InferenceSession(to_onnx(model, input_dtype=input_dtype)
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    proba, labels = session.run(["probabilities", "label"], {"X": X})
    expected = model.predict_proba(X)
    assert proba.dtype == np.float32 and proba.shape == expected.shape
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-5)
    rows = decided(expected)
    np.testing.assert_array_equal(labels[rows], model.predict(X)[rows])


@pytest.mark.parametrize("labels", [["coat", "bag", "shirt"], [-3, 7, 10], [1.0, 2.0, 4.0],
                                    np.array([7, 2**63 + 1, 2**64 - 1], dtype=np.uint64)],
                         ids=["str", "int", "float", "uint64-beyond-int64"])
def test_labels_are_the_models_classes(rng, labels):
    ort = pytest.importorskip("onnxruntime")
    model, X = fitted("symmetric", "relu", 3, rng, labels=labels)
    session = ort.InferenceSession(to_onnx(model, input_dtype="uint8").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    _, onnx_labels = session.run(None, {"X": X})
    expected = model.predict(X)
    assert set(onnx_labels.tolist()) <= set(labels)
    rows = decided(model.predict_proba(X))
    np.testing.assert_array_equal(onnx_labels[rows], expected[rows])
    np.testing.assert_array_equal(to_sklearn(model).predict(X)[rows], expected[rows])


def test_softmax_regression_and_feature_names(rng):
    pd = pytest.importorskip("pandas")
    X, y = make_data(rng)
    frame = pd.DataFrame(X / 255.0, columns=[f"px{i}" for i in range(X.shape[1])])
    clf = MLPImageClassifier((), random_state=0).partial_fit(frame, y, classes=[0, 1, 2])
    exported = to_sklearn(clf)
    assert exported.hidden_layer_sizes == () and len(exported.coefs_) == 1
    np.testing.assert_array_equal(exported.feature_names_in_, clf.feature_names_in_)
    np.testing.assert_allclose(exported.predict_proba(frame), clf.predict_proba(frame),
                               rtol=0, atol=1e-6)


def test_an_input_scaler_of_the_classifier_is_exported(rng):
    # A classifier that scales its own input (input_scaler_) must export as the pipeline
    # of that scaler and the network.
    ort = pytest.importorskip("onnxruntime")
    pipeline, X = fitted("per-channel", "tanh", 3, rng)
    scaler, clf = pipeline.steps[0][1], copy.deepcopy(pipeline[-1])
    clf.input_scaler_ = scaler
    exported = to_sklearn(clf)
    assert [n for n, _ in exported.steps] == ["input_scaler", "classifier"]
    expected = pipeline.predict_proba(X)
    np.testing.assert_allclose(exported.predict_proba(X), expected, rtol=0, atol=1e-6)
    session = ort.InferenceSession(to_onnx(clf, input_dtype="uint8").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": X})[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("export", [to_sklearn, to_onnx])
def test_unsupported_and_unfitted_models_are_refused(rng, export):
    X, y = make_data(rng)
    with pytest.raises(TypeError, match="LogisticRegression"):
        export(LogisticRegression(max_iter=1000).fit(X / 255.0, y))
    with pytest.raises(TypeError, match="the step 'standardscaler' is a StandardScaler"):
        export(make_pipeline(StandardScaler(), MLPImageClassifier()))
    with pytest.raises(TypeError, match="MLPClassifier"):
        export(make_pipeline(PixelScaler(), MLPClassifier()))
    with pytest.raises(NotFittedError, match="needs a fitted model"):
        export(MLPImageClassifier())
    clf = MLPImageClassifier((4,)).partial_fit(X / 255.0, y, classes=[0, 1, 2])
    with pytest.raises(NotFittedError, match="PixelScaler is not fitted"):
        export(make_pipeline(PixelScaler(), clf))
    clf.input_scaler_ = StandardScaler()
    with pytest.raises(TypeError, match="input_scaler_ is a StandardScaler"):
        export(clf)


def test_to_onnx_refuses_bad_input_types_and_says_how_to_install_onnx(rng, monkeypatch):
    X, y = make_data(rng)
    clf = MLPImageClassifier((4,)).partial_fit(X / 255.0, y, classes=[0, 1, 2])
    for bad in ("int16", "float16", "pixels"):
        with pytest.raises(ValueError, match="input_dtype must be one of"):
            to_onnx(clf, input_dtype=bad)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[onnx\]"'):
        to_onnx(clf)


def test_docstring_examples():
    pytest.importorskip("onnxruntime")
    result = doctest.testmod(fastmlp.export, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("n_classes", [2, 3], ids=["binary", "multiclass"])
def test_a_classifier_with_an_input_scaler_exports_its_scaling(rng, n_classes):
    ort = pytest.importorskip("onnxruntime")
    X, y = make_data(rng, n_classes=n_classes)
    clf = MLPImageClassifier((8,), random_state=0, batch_size=32,
                             input_scaler=PixelScaler(mode="standard"))
    clf.partial_fit(X, y, classes=np.unique(y))  # uint8 pixels, scaled inside the core
    exported = to_sklearn(clf)
    assert type(exported[0]) is StandardScaler
    np.testing.assert_allclose(exported.predict_proba(X), clf.predict_proba(X), rtol=0,
                               atol=1e-6)
    session = ort.InferenceSession(to_onnx(clf, input_dtype="uint8").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": X})[0], clf.predict_proba(X), rtol=0,
                               atol=1e-5)


def float32_forward(clf, X):
    """The network's probabilities computed by NumPy in float32, the softmax in float64:
    how close any float32 implementation of the same weights comes."""
    a = X.astype(np.float32)
    for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        a = np.maximum(a @ W + b, 0)
    z = (a @ clf.coefs_[-1] + clf.intercepts_[-1]).astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.data
@pytest.mark.parametrize("classes", [(0, 6), tuple(range(10))], ids=["binary", "multiclass"])
def test_exports_of_a_fashion_mnist_model(classes):
    # fastmlp computes in float32 and the exported scikit-learn model in float64: on a
    # real model, fastmlp's probabilities are as close to it as those of NumPy's float32
    # forward pass with the same weights (a few 1e-6 at the worst of 10000 images).
    from conftest import fashion_mnist_or_skip

    data = fashion_mnist_or_skip()
    train, test = np.isin(data.target, classes), np.isin(data.target_test, classes)
    X, y, X_test = data.data[train], data.target[train], data.data_test[test]
    model = make_pipeline(PixelScaler(), MLPImageClassifier((128,), max_iter=2,
                                                            random_state=0))
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    expected = model.predict_proba(X_test)
    exported = to_sklearn(model).predict_proba(X_test)
    float32_gap = np.abs(float32_forward(model[-1], model[0].transform(X_test))
                         - exported).max()
    gap = np.abs(expected - exported).max()
    print(f"fastmlp - scikit-learn {gap:.2e}, float32 NumPy - scikit-learn {float32_gap:.2e}")
    assert gap < 1e-5 and gap <= 3 * float32_gap
    rows = decided(expected)
    np.testing.assert_array_equal(to_sklearn(model).predict(X_test)[rows],
                                  model.predict(X_test)[rows])
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(to_onnx(model, input_dtype="uint8").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": X_test})[0], expected, rtol=0,
                               atol=1e-5)
