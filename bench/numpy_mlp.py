"""The NumPy baseline: the MLP fastmlp trains, written as a competent NumPy user would.

This is the yardstick of the training benchmark and the oracle of
``tests/test_numpy_baseline.py``. It trains ``Flatten -> [Linear -> ReLU] * k -> Linear ->
softmax`` with mini-batch SGD (optionally with momentum / Nesterov momentum and an L2 penalty)
exactly as :class:`fastmlp.MLPImageClassifier` does for the same ``random_state``:

* the same initialization -- it calls ``MLPImageClassifier._init_params`` itself, so the two
  cannot drift apart;
* the same batches -- one ``numpy.random.RandomState`` seeds the weights and then draws
  ``rng.permutation(n)`` at every epoch; batches are consecutive slices of it, the last one
  shorter;
* the same loss and gradients -- the mean cross-entropy over the batch plus
  ``0.5 * alpha * |W|^2 / B`` (biases not penalized), reported per epoch as the sum of the
  batch losses over the number of samples.

What makes it a fair baseline rather than a straw man: the data is converted to float32
once, every product is one ``@`` (``numpy.matmul``, i.e. the machine's BLAS), the softmax is
max-shifted and computed in place, the gradient of the logits overwrites the logits, and
every per-batch buffer is allocated once per batch size and reused.

Legend: B batch rows, D input features, H hidden width, C classes.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.utils import check_random_state

from fastmlp import MLPImageClassifier

__all__ = ["NumpyMLP", "as_float32_rows"]


def as_float32_rows(X):
    """X as a C-contiguous float32 (n, D) array; images (n, H, W[, C]) are flattened."""
    X = np.asarray(X)
    return np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float32)


class NumpyMLP:
    """ReLU MLP with a softmax output trained by mini-batch SGD in plain NumPy float32.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
    learning_rate : float, default=0.01
    batch_size : int, default=64
    momentum : float, default=0.0
        ``v <- momentum * v - lr * g``; ``W += v`` (or ``momentum * v - lr * g`` with
        ``nesterov``), as in fastmlp and scikit-learn.
    nesterov : bool, default=False
    alpha : float, default=0.0
        L2 penalty ``0.5 * alpha * |W|^2`` added to each batch's loss, divided by B.
    shuffle : bool, default=True
    weight_init : {"pytorch", "glorot"}, default="pytorch"
        Passed to fastmlp's initializer.
    random_state : int, RandomState or None, default=None

    Attributes
    ----------
    classes_, coefs_ (list of (fan_in, fan_out) float32), intercepts_, loss_curve_,
    history_ (per epoch: ``epoch``, ``loss``, ``accuracy``, ``time`` in seconds).
    """

    def __init__(self, hidden_layer_sizes=(256,), *, learning_rate=0.01, batch_size=64,
                 momentum=0.0, nesterov=False, alpha=0.0, shuffle=True, weight_init="pytorch",
                 random_state=None):
        self.hidden_layer_sizes = tuple(int(h) for h in hidden_layer_sizes)
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.alpha = float(alpha)
        self.shuffle = bool(shuffle)
        self.weight_init = weight_init
        self.random_state = random_state

    # ------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------

    def fit(self, X, y, epochs=1):
        """Initialize from ``random_state`` and train ``epochs`` epochs."""
        X = as_float32_rows(X)
        self._initialize(X.shape[1], np.unique(y))
        y_enc = self._encode(y)
        for _ in range(epochs):
            self._epoch(X, y_enc)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch, initializing on the first call (``classes`` required then)."""
        X = as_float32_rows(X)
        if not hasattr(self, "coefs_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self._initialize(X.shape[1], np.unique(classes))
        self._epoch(X, self._encode(y))
        return self

    def _initialize(self, n_features, classes):
        self.classes_ = classes
        sizes = [int(n_features), *self.hidden_layer_sizes, len(classes)]
        self._rng = check_random_state(self.random_state)
        init = MLPImageClassifier(self.hidden_layer_sizes, "relu", weight_init=self.weight_init)
        self.coefs_, self.intercepts_ = init._init_params(sizes, self._rng)
        if self.momentum != 0:
            self._v_coefs = [np.zeros_like(w) for w in self.coefs_]
            self._v_intercepts = [np.zeros_like(b) for b in self.intercepts_]
        else:
            self._v_coefs = self._v_intercepts = [None] * len(self.coefs_)
        self.loss_curve_, self.history_ = [], []
        self._buffers_for = None

    def _encode(self, y):
        y = np.asarray(y)
        enc = np.searchsorted(self.classes_, y)
        if np.any(enc >= len(self.classes_)) or np.any(self.classes_[np.minimum(
                enc, len(self.classes_) - 1)] != y):
            raise ValueError("y contains labels not in classes_")
        return enc.astype(np.intp)

    def _buffers(self, batch_size):
        """Activations, deltas and gradients for batches of up to ``batch_size`` rows."""
        if self._buffers_for != batch_size:
            sizes = [self.coefs_[0].shape[0], *(w.shape[1] for w in self.coefs_)]
            # acts[l] is layer l's input (B, fan_in); acts[-1] the logits, then dlogits.
            self._acts = [np.empty((batch_size, s), np.float32) for s in sizes]
            # deltas[l] (B, fan_in_l) is the gradient at layer l's input, for l >= 1.
            self._deltas = [None] + [np.empty((batch_size, s), np.float32)
                                     for s in sizes[1:-1]]
            self._gW = [np.empty_like(w) for w in self.coefs_]
            self._gb = [np.empty_like(b) for b in self.intercepts_]
            self._rows = np.arange(batch_size)
            self._buffers_for = batch_size
        return self._acts, self._deltas, self._gW, self._gb

    def _epoch(self, X, y):
        start_time = time.perf_counter()
        n = X.shape[0]
        bs = min(self.batch_size, n)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        loss_sum, n_correct = 0.0, 0
        for start in range(0, n, bs):
            batch_loss, correct = self._step(X, y, order[start:start + bs], bs)
            loss_sum += batch_loss
            n_correct += correct
        loss = loss_sum / n
        self.loss_curve_.append(loss)
        self.history_.append({"epoch": len(self.history_) + 1, "loss": loss,
                              "accuracy": n_correct / n,
                              "time": time.perf_counter() - start_time})

    def _step(self, X, y, idx, bs):
        """One SGD step on rows ``idx``; returns (summed loss + penalty, n_correct)."""
        acts_full, deltas_full, gWs, gbs = self._buffers(bs)
        B = idx.shape[0]
        acts = [a[:B] for a in acts_full]
        W, b, L = self.coefs_, self.intercepts_, len(self.coefs_)

        np.take(X, idx, axis=0, out=acts[0])  # (B, D)
        yb = y[idx]
        for i in range(L):  # acts[i+1] = relu(acts[i] @ W_i + b_i), logits without ReLU
            np.matmul(acts[i], W[i], out=acts[i + 1])
            acts[i + 1] += b[i]
            if i + 1 < L:
                np.maximum(acts[i + 1], 0, out=acts[i + 1])

        z = acts[L]  # (B, C) logits, turned into dlogits in place
        rows = self._rows[:B]
        n_correct = int(np.count_nonzero(z.argmax(axis=1) == yb))
        z -= z.max(axis=1, keepdims=True)
        z_true = z[rows, yb]
        np.exp(z, out=z)
        denom = z.sum(axis=1)
        batch_loss = float(np.sum(np.log(denom) - z_true, dtype=np.float64))
        if self.alpha:
            batch_loss += 0.5 * self.alpha * sum(float(np.vdot(w, w)) for w in W)
        z /= denom[:, None]  # softmax
        z[rows, yb] -= 1.0
        z *= np.float32(1.0 / B)  # d(mean loss)/dz
        decay = self.alpha / B

        delta = z  # (B, fan_out) gradient at layer i's output
        for i in range(L - 1, -1, -1):
            if i > 0:  # gradient at the input of layer i, taken before W_i changes
                prev = deltas_full[i][:B]
                np.matmul(delta, W[i].T, out=prev)
                prev *= acts[i] > 0
            np.matmul(acts[i].T, delta, out=gWs[i])
            np.sum(delta, axis=0, out=gbs[i])
            self._sgd(W[i], gWs[i], self._v_coefs[i], decay)
            self._sgd(b[i], gbs[i], self._v_intercepts[i], 0.0)
            if i > 0:
                delta = prev
        return batch_loss, n_correct

    def _sgd(self, param, grad, velocity, decay):
        """SGD step in place; ``grad`` is scratch and is overwritten."""
        if decay:
            grad += decay * param
        grad *= self.learning_rate  # lr * g
        if velocity is None:
            param -= grad
            return
        velocity *= self.momentum
        velocity -= grad  # v = momentum * v - lr * g
        if self.nesterov:
            param -= grad
            np.multiply(velocity, self.momentum, out=grad)
            param += grad  # W += momentum * v - lr * g
        else:
            param += velocity

    # ------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------

    def decision_function(self, X):
        """Logits (n, C) in float32."""
        h = as_float32_rows(X)
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            h = h @ w
            h += b
            if i + 1 < len(self.coefs_):
                np.maximum(h, 0, out=h)
        return h

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def predict_proba(self, X):
        z = self.decision_function(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def score(self, X, y):
        """Mean accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
