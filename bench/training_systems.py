"""The systems of the training benchmark: one runner per row of bench_training.py's tables.

A runner trains a fresh model of the reference run (784-256(ReLU)-10, plain SGD with
learning rate 0.01, batches of 64, reshuffled every epoch) for a number of epochs and
returns it with the wall time of every epoch (``train``), and predicts labels
(``predict``). bench_training.py runs each one in a worker process of its own, so no two
systems' thread pools share a process. Libraries other than fastmlp, NumPy and
scikit-learn are imported inside the methods: a row whose library is missing is skipped,
and the others run without it loaded.

Attributes every runner has: ``family`` (for ``--systems``), ``precision``, ``threads``
(as printed), ``trains`` (False for a row that only predicts), ``required`` (an error in a
required row flags the run; in another row it is reported in that row).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastmlp._machine import n_cores

HIDDEN = 256
BATCH_SIZE = 64
LEARNING_RATE = 0.01


def load_sibling(name):
    """A module of bench/ (not a package), loaded by path so any caller can use it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _missing(*modules):
    """Why the modules cannot be imported here (without importing them), or None."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def _pytorch_init(sizes, seed):
    """fastmlp's weight_init="pytorch" draw for ``seed``: U(-1/sqrt(fan_in), +) for weights
    and biases, the same numbers fastmlp and the NumPy baseline start from."""
    from sklearn.utils import check_random_state

    from fastmlp import MLPImageClassifier

    init = MLPImageClassifier(tuple(sizes[1:-1]), "relu", weight_init="pytorch")
    return init._init_params(sizes, check_random_state(seed))


class Runner:
    family = ""
    precision = "float32"
    threads = "1"
    trains = True
    required = True

    def unavailable(self):
        """Why this row cannot run on this machine, or None."""
        return None

    def report(self, model, X_test, labels):
        """Facts a worker records beside the times (compile times, agreement, ...)."""
        return {}

    def prepare(self, X):
        """The scaled float32 rows X as this system takes them, before anything is timed."""
        return X


# ----------------------------------------------------------------------------------------
# fastmlp, NumPy, scikit-learn
# ----------------------------------------------------------------------------------------


class FastmlpRunner(Runner):
    family = "fastmlp"

    def __init__(self, n_threads, precision="float32", pixels=False):
        self.n_threads = n_threads
        self.threads = str(n_threads)
        self.precision = precision
        self.pixels = pixels  # train on the 8-bit images, scaled by fastmlp's input_scaler

    def prepare(self, X):
        """With ``pixels``: the 8-bit images the rows were scaled from (what a user holds),
        recovered exactly: scaling them again must give the rows bit for bit, so the model
        is the one the float32 rows train."""
        if not self.pixels:
            return X
        from fastmlp import PixelScaler

        images = np.rint(np.asarray(X, np.float64) * 127.5 + 127.5).astype(np.uint8)
        again = PixelScaler(mode="symmetric").fit(images).transform(images)
        if again.tobytes() != np.ascontiguousarray(X, np.float32).tobytes():
            raise RuntimeError("the rows are not the symmetric scaling of 8-bit pixels")
        return images

    def unavailable(self):
        if self.precision == "float32":
            return None
        from fastmlp import _core

        if not hasattr(_core, "detected_bf16_kernel"):
            return "this fastmlp build has no bfloat16 kernels"
        if _core.detected_bf16_kernel() == "reference":
            return "no bfloat16 hardware (detected bf16 kernel: reference)"
        return None

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        from sklearn.exceptions import ConvergenceWarning

        import fastmlp

        # Passed only when asked for, so float32 rows run with a fastmlp without it.
        extra = {} if self.precision == "float32" else {"precision": self.precision}
        if self.pixels:
            extra["input_scaler"] = fastmlp.PixelScaler(mode="symmetric")
        clf = fastmlp.MLPImageClassifier(
            (hidden,), "relu", solver="sgd", momentum=0.0, alpha=0.0, batch_size=batch_size,
            learning_rate_init=LEARNING_RATE, max_iter=epochs, weight_init="pytorch",
            n_iter_no_change=epochs + 1, random_state=seed, n_threads=self.n_threads, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point
            if "precision" in extra:  # a bfloat16 row silently in float32 would be a lie
                warnings.simplefilter("error", getattr(fastmlp, "PrecisionWarning", Warning))
            clf.fit(X, y)
        return clf, [h["time"] for h in clf.history_]

    def predict(self, model, X):
        return model.predict(X)

    def report(self, model, X_test, labels):
        if self.precision == "float32":
            return {}
        from fastmlp import _core

        return {"bf16_kernel": _core.active_bf16_kernel()}


class NumpyRunner(Runner):
    family = "numpy"

    def __init__(self, blas_threads=None):
        self.blas_threads = blas_threads  # None: NumPy's default
        self.threads = "BLAS default" if blas_threads is None else str(blas_threads)

    def _limits(self):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.blas_threads, user_api="blas")

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        numpy_mlp = load_sibling("numpy_mlp")
        model = numpy_mlp.NumpyMLP((hidden,), learning_rate=LEARNING_RATE,
                                   batch_size=batch_size, weight_init="pytorch",
                                   random_state=seed)
        with self._limits():
            model.fit(X, y, epochs=epochs)
        return model, [h["time"] for h in model.history_]

    def predict(self, model, X):
        with self._limits():
            return model.predict(X)


class SklearnRunner(Runner):
    family = "sklearn"
    threads = "BLAS default"

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=(hidden,), solver="sgd", momentum=0.0,
                            alpha=0.0, batch_size=batch_size,
                            learning_rate_init=LEARNING_RATE, random_state=seed)
        classes = np.unique(y)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - start)
        return clf, times

    def predict(self, model, X):
        return model.predict(X)


# ----------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------


class TorchRunner(Runner):
    """The PyTorch loop, in one of four modes: ``dataloader`` (a ``DataLoader`` over a
    ``TensorDataset``), ``preloaded`` (tensors in memory, a ``torch.randperm`` per epoch,
    batches by indexing), ``bf16`` (preloaded, forward and loss under bfloat16 autocast),
    ``compile`` (preloaded, the model through ``torch.compile``)."""

    family = "torch"
    required = False

    def __init__(self, mode):
        self.mode = mode
        self.threads = str(n_cores())
        self.precision = "bfloat16" if mode == "bf16" else "float32"

    def unavailable(self):
        return _missing("torch")

    def _torch(self):
        torch = importlib.import_module("torch")
        torch.set_num_threads(n_cores())
        return torch

    def _autocast(self, torch):
        if self.mode == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _model(self, torch, n_features, n_classes, hidden, seed):
        nn = torch.nn
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(),
                              nn.Linear(hidden, n_classes))
        # Compiled lazily: the first epoch (never timed) and the first predict (the warm-up
        # call) pay for compilation.
        return torch.compile(model) if self.mode == "compile" else model

    def _batches(self, torch, X_t, y_t, batch_size, generator):
        if self.mode == "dataloader":
            return lambda: torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(X_t, y_t), batch_size=batch_size,
                shuffle=True, generator=generator)
        n = X_t.shape[0]

        def batches():
            perm = torch.randperm(n, generator=generator)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                yield X_t[idx], y_t[idx]
        return batches

    def _epoch(self, torch, model, batches, optimizer, loss_fn, n):
        model.train()
        # Loss and accuracy are accumulated per batch, as every system here reports them.
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for xb, yb in batches():
            with self._autocast(torch):
                logits = model(xb)
                loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
        return loss_sum.item() / n, correct.item() / n

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        torch = self._torch()
        model = self._model(torch, X.shape[1], int(y.max()) + 1, hidden, seed)
        loss_fn = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        X_t = torch.from_numpy(X)
        y_t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        batches = self._batches(torch, X_t, y_t, batch_size,
                                torch.Generator().manual_seed(seed))
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            self._epoch(torch, model, batches, optimizer, loss_fn, X.shape[0])
            times.append(time.perf_counter() - start)
        return model, times

    def predict(self, model, X):
        torch = self._torch()
        model.eval()
        with torch.inference_mode(), self._autocast(torch):
            return model(torch.from_numpy(X)).argmax(1).numpy()

    def report(self, model, X_test, labels):
        torch = importlib.import_module("torch")
        return {"torch": torch.__version__,
                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


# ----------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------


def _jax_functions(n, batch_size):
    """The jitted epoch and predict of the reference MLP for n samples.

    The epoch is one XLA program: a permutation drawn from the epoch's key, the n // B full
    batches as one ``lax.scan`` of SGD steps (each gathers its B rows of X), and the
    n % B remaining samples as a last, smaller step, as the other systems train them.
    """
    import jax
    import jax.numpy as jnp

    def forward(params, x):
        (w1, b1), (w2, b2) = params
        return jnp.maximum(x @ w1 + b1, 0.0) @ w2 + b2

    def loss(params, x, y):
        logits = forward(params, x)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)
        return jnp.mean(nll), logits

    def step(params, x, y):
        (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads)
        return params, value * y.shape[0], jnp.sum(jnp.argmax(logits, 1) == y)

    def epoch(params, X, y, key, epoch_index):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch_index), n)
        n_full = n // batch_size

        def body(carry, idx):
            params, loss_sum, correct = carry
            params, batch_loss, batch_correct = step(params, X[idx], y[idx])
            return (params, loss_sum + batch_loss, correct + batch_correct), None

        carry = (params, jnp.float32(0), jnp.int32(0))
        carry, _ = jax.lax.scan(body, carry, perm[:n_full * batch_size].reshape(n_full, -1))
        if n % batch_size:
            idx = perm[n_full * batch_size:]
            params, batch_loss, batch_correct = step(carry[0], X[idx], y[idx])
            carry = (params, carry[1] + batch_loss, carry[2] + batch_correct)
        return carry[0], carry[1] / n, carry[2] / n

    return jax.jit(epoch), jax.jit(lambda params, x: jnp.argmax(forward(params, x), 1))


class JaxRunner(Runner):
    """The reference MLP in JAX: fastmlp's initial weights, an epoch as one jitted
    ``lax.scan``; compiled ahead of the first epoch, the compile time reported apart."""

    family = "jax"
    threads = "XLA default"
    required = False

    def unavailable(self):
        return _missing("jax")

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        import jax
        import jax.numpy as jnp

        sizes = [X.shape[1], hidden, int(y.max()) + 1]
        coefs, intercepts = _pytorch_init(sizes, seed)
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(coefs, intercepts)]
        X_d, y_d = jnp.asarray(X), jnp.asarray(y, dtype=jnp.int32)
        key = jax.random.key(seed)
        epoch, self._predict = _jax_functions(X.shape[0], batch_size)
        start = time.perf_counter()
        compiled = epoch.lower(params, X_d, y_d, key, jnp.int32(0)).compile()
        self.compile_time = time.perf_counter() - start
        times = []
        for e in range(epochs):
            start = time.perf_counter()
            params, loss, acc = compiled(params, X_d, y_d, key, jnp.int32(e))
            _ = (float(loss), float(acc))  # waits for the epoch, as .item() does in torch
            times.append(time.perf_counter() - start)
        return params, times

    def predict(self, model, X):
        return np.asarray(self._predict(model, X))

    def report(self, model, X_test, labels):
        import jax

        return {"compile_time": self.compile_time, "jax": jax.__version__,
                "jax_backend": jax.default_backend()}


# ----------------------------------------------------------------------------------------
# ONNX Runtime: predicts with fastmlp's model exported by fastmlp.export.to_onnx
# ----------------------------------------------------------------------------------------


class OnnxRuntimeRunner(Runner):
    """Inference only: fastmlp trains the model (all cores, float32, the same seed as the
    fastmlp rows, so the same weights), ``to_onnx`` exports it, ONNX Runtime predicts."""

    family = "onnxruntime"
    trains = False
    required = False

    def __init__(self):
        self.threads = str(n_cores())

    def unavailable(self):
        return _missing("onnxruntime", "onnx")

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        import onnxruntime as ort

        from fastmlp.export import to_onnx

        clf, _ = FastmlpRunner(n_cores()).train(X, y, epochs, seed, hidden, batch_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_cores()
        session = ort.InferenceSession(to_onnx(clf).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        return (clf, session), []

    def predict(self, model, X):
        return model[1].run(["label"], {"X": X})[0]

    def report(self, model, X_test, labels):
        import onnxruntime as ort

        agreement = float(np.mean(labels == model[0].predict(X_test)))
        return {"agreement_with_fastmlp": agreement, "onnxruntime": ort.__version__}


def make_runners():
    """Every row, by name, in the order a repeat runs them."""
    cores = n_cores()
    thread_counts = [1, cores] if cores > 1 else [1]
    runners = {f"fastmlp-{t}t": FastmlpRunner(t) for t in thread_counts}
    runners.update({f"fastmlp-bf16-{t}t": FastmlpRunner(t, "bfloat16") for t in thread_counts})
    # From the 8-bit images (the data set's own pixels), scaled by fastmlp as it reads them.
    runners[f"fastmlp-u8-{cores}t"] = FastmlpRunner(cores, pixels=True)
    runners[f"fastmlp-bf16-u8-{cores}t"] = FastmlpRunner(cores, "bfloat16", pixels=True)
    runners["numpy"] = NumpyRunner()
    runners["sklearn"] = SklearnRunner()
    for mode in ("dataloader", "preloaded", "bf16", "compile"):
        runners[f"torch-{mode}"] = TorchRunner(mode)
    runners["jax"] = JaxRunner()
    runners["onnxruntime"] = OnnxRuntimeRunner()
    return runners
