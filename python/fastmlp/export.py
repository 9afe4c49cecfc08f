"""A fitted fastmlp model in other libraries: :func:`to_sklearn` and :func:`to_onnx`.

Both take a fitted :class:`~fastmlp.MLPImageClassifier`, or a fitted ``Pipeline`` of
:class:`~fastmlp.PixelScaler` steps (or ``"passthrough"``) followed by an
``MLPImageClassifier`` (``make_pipeline(PixelScaler(), MLPImageClassifier())``), and give a
model that computes the same probabilities from the same input: rows of ``n_features_in_``
pixels, ``(n_samples, H * W * C)`` (flatten image arrays first).

A PixelScaler is the affine map ``(X - offset_) / scale_`` per pixel; a classifier that
carries a fitted ``input_scaler_`` (a PixelScaler) applies it first, and so do the
exported models.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_onnx", "to_sklearn"]

# ONNX operator set and IR version of the exported graphs: opset 17 (ONNX 1.12, 2022) is
# read by every ONNX Runtime since 1.12; IR version 8 is the one that opset came with.
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
_ONNX_ACTIVATIONS = {"relu": "Relu", "logistic": "Sigmoid", "tanh": "Tanh", "identity": None}


def _parts(model, what):
    """([(step name, PixelScaler)], classifier, is_pipeline) of a supported fitted model;
    TypeError for other objects, NotFittedError (a ValueError) for unfitted ones."""
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    from .estimator import MLPImageClassifier
    from .preprocessing import PixelScaler

    supported = (f"{what} exports a fitted MLPImageClassifier or a Pipeline of PixelScaler "
                 f"steps and an MLPImageClassifier")
    if isinstance(model, Pipeline):
        *head, (name, clf) = model.steps
        scalers = [(n, s) for n, s in head if s not in ("passthrough", None)]
        for n, s in scalers:
            if type(s) is not PixelScaler:
                raise TypeError(f"{supported}; the step {n!r} is a {type(s).__qualname__}")
    else:
        name, clf, scalers = "classifier", model, []
    if type(clf) is not MLPImageClassifier:
        raise TypeError(f"{supported}, not a {type(clf).__module__}.{type(clf).__qualname__}")
    for _, est in [*scalers, (name, clf)]:
        check_is_fitted(est, msg=f"{what} needs a fitted model: this {type(est).__name__} "
                                 f"is not fitted yet; call fit first")
    inner = getattr(clf, "input_scaler_", None)
    if inner is not None:
        if type(inner) is not PixelScaler:
            raise TypeError(f"{supported}; input_scaler_ is a {type(inner).__qualname__}")
        scalers.append(("input_scaler", inner))
    return scalers, (name, clf), isinstance(model, Pipeline)


def _affine(scaler):
    """(offset, scale): float64 arrays of shape (n_features,) of a fitted PixelScaler."""
    offset, scale = scaler._per_feature(scaler.offset_, scaler.scale_)
    shape = (scaler.n_features_in_,)
    return (np.broadcast_to(np.asarray(offset, np.float64), shape).copy(),
            np.broadcast_to(np.asarray(scale, np.float64), shape).copy())


def _output_layer(clf):
    """The weights and biases as float64, the last layer as scikit-learn has it: for two
    classes one logistic unit on the logit difference, since softmax([z0, z1])[1] is
    logistic(z1 - z0)."""
    coefs = [c.astype(np.float64) for c in clf.coefs_]
    intercepts = [b.astype(np.float64) for b in clf.intercepts_]
    if len(clf.classes_) == 2:
        coefs[-1] = coefs[-1][:, 1:] - coefs[-1][:, :1]
        intercepts[-1] = intercepts[-1][1:] - intercepts[-1][:1]
    return coefs, intercepts


# --------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------

def to_sklearn(model):
    """An equivalent fitted scikit-learn model.

    Parameters
    ----------
    model : MLPImageClassifier or Pipeline
        A fitted ``MLPImageClassifier``, or a fitted ``Pipeline`` of ``PixelScaler``
        steps and an ``MLPImageClassifier``.

    Returns
    -------
    sklearn_model : MLPClassifier or Pipeline
        For a classifier, a fitted ``sklearn.neural_network.MLPClassifier`` with the same
        weights (float64) and the same hyperparameters where scikit-learn has them; for a
        pipeline, a ``Pipeline`` with the same step names in which each ``PixelScaler``
        is a fitted ``StandardScaler`` computing the same ``(X - offset_) / scale_``. A
        classifier with an ``input_scaler_`` becomes a pipeline too. Its
        ``predict_proba`` equals fastmlp's to the rounding of fastmlp's float32 (here
        scikit-learn computes in float64): below 1e-7 for half of Fashion-MNIST's 10000
        test images under a 784-128-10 network, 2e-6 at the worst.

    Raises
    ------
    TypeError
        For another kind of model, or a pipeline with other steps.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.

    Notes
    -----
    fastmlp's binary models have two softmax outputs; scikit-learn's have one logistic
    unit, so the exported last layer holds the difference of the two: ``W[:, 1] - W[:,
    0]`` and ``b1 - b0``.

    The MLPClassifier is made by scikit-learn's public API: ``partial_fit`` on one
    all-zero row per class creates every fitted attribute its predictions need (its
    label binarizer and output activation included); then its public fitted attributes
    ``coefs_``, ``intercepts_``, ``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``,
    ``best_loss_``, ``validation_scores_``, ``best_validation_score_`` and
    ``feature_names_in_`` are set to fastmlp's. Each ``StandardScaler`` is fitted on
    zeros and given ``mean_``, ``scale_`` and ``var_`` (and ``feature_names_in_``).
    The result is for predictions: training it further with ``fit`` and
    ``warm_start=True`` starts scikit-learn's optimizer afresh from these weights, while
    ``partial_fit`` would continue the optimizer of that one zero-row step.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastmlp import MLPImageClassifier, PixelScaler
    >>> from fastmlp.export import to_sklearn
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (60, 16), dtype=np.uint8)
    >>> y = (X[:, 0] > 127).astype(int)
    >>> scaler = PixelScaler().fit(X)
    >>> clf = MLPImageClassifier((8,), random_state=0)
    >>> model = make_pipeline(scaler, clf.partial_fit(scaler.transform(X), y, classes=[0, 1]))
    >>> exported = to_sklearn(model)
    >>> [type(step).__name__ for _, step in exported.steps]
    ['StandardScaler', 'MLPClassifier']
    >>> bool(np.allclose(exported.predict_proba(X), model.predict_proba(X), atol=1e-6))
    True
    """
    from sklearn.pipeline import Pipeline

    scalers, (name, clf), is_pipeline = _parts(model, "to_sklearn")
    mlp = _sklearn_classifier(clf)
    if not is_pipeline and not scalers:
        return mlp
    steps = [(n, _standard_scaler(s)) for n, s in scalers] + [(name, mlp)]
    if is_pipeline:  # passthrough steps stay, so that the step names stay too
        names = {n for n, _ in scalers}
        steps = [(n, s) for n, s in model.steps[:-1] if n not in names
                 and s in ("passthrough", None)] + steps
    return Pipeline(steps)


def _standard_scaler(scaler):
    from sklearn.preprocessing import StandardScaler

    offset, scale = _affine(scaler)
    standard = StandardScaler().fit(np.zeros((2, scaler.n_features_in_)))
    standard.mean_, standard.scale_, standard.var_ = offset, scale, np.square(scale)
    if hasattr(scaler, "feature_names_in_"):
        standard.feature_names_in_ = scaler.feature_names_in_
    return standard


_SHARED_PARAMS = ("activation", "solver", "alpha", "batch_size", "learning_rate_init",
                  "power_t", "max_iter", "shuffle", "tol", "verbose", "momentum",
                  "nesterovs_momentum", "validation_fraction", "beta_1", "beta_2", "epsilon",
                  "n_iter_no_change")


def _sklearn_classifier(clf):
    import warnings

    from sklearn.neural_network import MLPClassifier

    params = {k: getattr(clf, k) for k in _SHARED_PARAMS}
    random_state = clf.random_state if isinstance(clf.random_state, int) else None
    mlp = MLPClassifier(
        hidden_layer_sizes=tuple(c.shape[1] for c in clf.coefs_[:-1]),
        learning_rate=clf.learning_rate if clf.learning_rate != "cosine" else "constant",
        random_state=random_state, **params)
    classes = clf.classes_
    with warnings.catch_warnings():  # what a fit on a few zero rows warns of is moot
        warnings.simplefilter("ignore")
        mlp.partial_fit(np.zeros((len(classes), clf.n_features_in_)), classes, classes=classes)
    mlp.coefs_, mlp.intercepts_ = _output_layer(clf)
    mlp.n_iter_, mlp.t_ = clf.n_iter_, clf.t_
    mlp.loss_curve_ = list(clf.loss_curve_)
    mlp.loss_ = mlp.loss_curve_[-1] if mlp.loss_curve_ else None
    mlp.best_loss_ = clf.best_loss_
    mlp.validation_scores_ = clf.validation_scores_
    mlp.best_validation_score_ = clf.best_validation_score_
    if hasattr(clf, "feature_names_in_"):
        mlp.feature_names_in_ = clf.feature_names_in_
    return mlp


# --------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------

def to_onnx(model, *, input_dtype="float32"):
    """The model as an ONNX graph of raw pixels to probabilities and labels.

    Needs the ``onnx`` package (``pip install "fastmlp[onnx]"``).

    Parameters
    ----------
    model : MLPImageClassifier or Pipeline
        A fitted ``MLPImageClassifier``, or a fitted ``Pipeline`` of ``PixelScaler``
        steps and an ``MLPImageClassifier``.
    input_dtype : {"float32", "float64", "uint8"}, default="float32"
        The element type of the graph's input: ``"uint8"`` takes 8-bit pixels as they
        are stored. The graph casts them itself.

    Returns
    -------
    onnx_model : onnx.ModelProto
        Opset 17. Input ``"X"`` of shape ``(N, n_features_in_)``; outputs
        ``"probabilities"`` (float32, ``(N, n_classes)``; two columns for binary
        problems, as ``predict_proba``) and ``"label"`` (``(N,)``, the entries of
        ``classes_``: int64 (uint64 beyond int64's range), float64, bool or string).
        Each PixelScaler is computed in double precision and rounded to float32, as
        fastmlp does; the network runs in float32.

    Raises
    ------
    TypeError
        For another kind of model, a pipeline with other steps, or labels ONNX cannot
        hold.
    ValueError
        For an unknown ``input_dtype``; ``NotFittedError`` if the model is not fitted.
    ImportError
        If ``onnx`` is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastmlp import MLPImageClassifier, PixelScaler
    >>> from fastmlp.export import to_onnx
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (60, 16), dtype=np.uint8)
    >>> scaler = PixelScaler().fit(X)
    >>> clf = MLPImageClassifier((8,), random_state=0)
    >>> clf = clf.partial_fit(scaler.transform(X), X[:, 0] % 3, classes=[0, 1, 2])
    >>> graph = to_onnx(make_pipeline(scaler, clf), input_dtype="uint8")
    >>> [o.name for o in graph.graph.output]
    ['probabilities', 'label']
    >>> import onnxruntime
    >>> session = onnxruntime.InferenceSession(graph.SerializeToString())
    >>> probabilities, labels = session.run(None, {"X": X})
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("fastmlp.export.to_onnx needs the onnx package: "
                          'pip install "fastmlp[onnx]" (or pip install onnx)') from None
    from . import __version__

    dtypes = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE,
              "uint8": onnx.TensorProto.UINT8}
    try:
        input_type = dtypes[np.dtype(input_dtype).name]
    except (TypeError, KeyError):
        raise ValueError(f"input_dtype must be one of {sorted(dtypes)}, got "
                         f"{input_dtype!r}") from None
    scalers, (_, clf), _ = _parts(model, "to_onnx")
    graph = _OnnxGraph(onnx)
    x = graph.scaled_input(input_type, clf.n_features_in_, [_affine(s) for _, s in scalers])
    graph.network(x, clf)
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "fastmlp", graph.inputs, graph.outputs,
                               graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)],
        producer_name="fastmlp", producer_version=__version__, ir_version=ONNX_IR_VERSION)
    onnx.checker.check_model(proto)
    return proto


class _OnnxGraph:
    """The nodes, initializers, inputs and outputs of the exported graph."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []

    def constant(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def scaled_input(self, input_type, n_features, affines):
        """Input "X" cast to float32 through each affine map, done in double."""
        TensorProto = self.onnx.TensorProto
        self.inputs.append(self.helper.make_tensor_value_info("X", input_type,
                                                              ["N", n_features]))
        x = "X"
        for i, (offset, scale) in enumerate(affines):
            x = self.node("Cast", [x], f"scaler{i}_input", to=TensorProto.DOUBLE)
            x = self.node("Sub", [x, self.constant(f"scaler{i}_offset", offset)],
                          f"scaler{i}_centred")
            x = self.node("Div", [x, self.constant(f"scaler{i}_scale", scale)],
                          f"scaler{i}_scaled")
            x = self.node("Cast", [x], f"scaler{i}_output", to=TensorProto.FLOAT)
        if x == "X" and input_type != TensorProto.FLOAT:
            x = self.node("Cast", [x], "X_float", to=TensorProto.FLOAT)
        return x

    def network(self, x, clf):
        """Linear layers with the hidden activation, softmax, and the label of the
        most probable class."""
        activation = _ONNX_ACTIVATIONS[clf.activation]
        last = len(clf.coefs_) - 1
        for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
            x = self.node("MatMul", [x, self.constant(f"coefs_{i}", w)], f"layer{i}_matmul")
            x = self.node("Add", [x, self.constant(f"intercepts_{i}", b)], f"layer{i}_out")
            if i < last and activation is not None:
                x = self.node(activation, [x], f"layer{i}_{activation.lower()}")
        proba = self.node("Softmax", [x], "probabilities", axis=1)
        index = self.node("ArgMax", [proba], "label_index", axis=1, keepdims=0)
        self.node("Gather", [self._classes(clf.classes_), index], "label", axis=0)
        n_classes = len(clf.classes_)
        TensorProto = self.onnx.TensorProto
        self.outputs += [
            self.helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                               ["N", n_classes]),
            self.helper.make_tensor_value_info("label", self._label_type, ["N"])]

    def _classes(self, classes):
        TensorProto = self.onnx.TensorProto
        if classes.dtype.kind == "u" and classes.max() > np.iinfo(np.int64).max:
            # As int64 these labels would wrap to negative numbers.
            array, self._label_type = classes.astype(np.uint64), TensorProto.UINT64
        elif classes.dtype.kind in "iu":
            array, self._label_type = classes.astype(np.int64), TensorProto.INT64
        elif classes.dtype.kind == "f":
            array, self._label_type = classes.astype(np.float64), TensorProto.DOUBLE
        elif classes.dtype.kind == "b":
            array, self._label_type = classes, TensorProto.BOOL
        elif classes.dtype.kind == "U" or all(isinstance(c, str) for c in classes):
            self._label_type = TensorProto.STRING
            self.initializers.append(self.helper.make_tensor(
                "classes", TensorProto.STRING, [len(classes)],
                [str(c).encode("utf-8") for c in classes]))
            return "classes"
        else:
            raise TypeError(f"to_onnx: the class labels ({classes.dtype}) cannot be an ONNX "
                            f"tensor; use integer, float, bool or string labels")
        return self.constant("classes", array)
