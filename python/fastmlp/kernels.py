"""NumPy-facing wrappers of fastmlp's C++ kernels (float32).

These are the building blocks of the training loop, exposed for tests, benchmarks and
curious users. Inputs are validated here with messages that name the argument; arrays
updated in place (``sgd_step``, ``adam_step``) must already be writable C-contiguous
float32 and are never silently copied. The GIL is released while a kernel runs.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np

from . import _core

__all__ = [
    "matmul",
    "relu",
    "relu_backward",
    "activation",
    "activation_backward",
    "softmax_cross_entropy",
    "sgd_step",
    "adam_step",
]

# The activations by name, as the core's enum (defined once, in csrc/kernels/activation.hpp).
ACTIVATIONS = dict(_core.Activation.__members__)


_F32 = np.dtype(np.float32)


def _float32(x, name, why=""):
    """x itself, after checking it is a float32 NumPy array (TypeError naming it if not).
    The identity tests first keep the common case to two pointer comparisons."""
    if type(x) is not np.ndarray and not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype is not _F32 and x.dtype != _F32:
        raise TypeError(f"{name} must have dtype float32{why}, got {x.dtype}")
    return x


def _float_matrix(x, name):
    """A 2-D float32 input, read in place by the core."""
    _float32(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {x.shape}")
    return x


def _as_kernel_operand(x, trans):
    """(array, trans) with a unit inner stride: a Fortran array is its C-ordered transpose.

    Anything else (e.g. a column slice with a step) is copied once to C order. Empty
    arrays get explicit strides, since NumPy may report zero strides for them.
    """
    s0, s1 = x.strides
    if s1 == 4 and s0 >= x.shape[1] * 4 and s0 % 4 == 0:
        return x, trans
    if x.size == 0:
        return np.lib.stride_tricks.as_strided(x, strides=(max(x.shape[1], 1) * 4, 4)), trans
    if x.flags.f_contiguous:
        return x.T, not trans
    return np.ascontiguousarray(x), trans


def _n_threads(n_threads):
    if n_threads is None:
        return 0
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be an int or None, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1 or None, got {n_threads}")
    return min(int(n_threads), _core.MAX_THREADS)  # results do not depend on it


def matmul(a, b, trans_a=False, trans_b=False, *, out=None, n_threads=None):
    """op(a) @ op(b) in float32, where op(x) is x or x.T.

    Parameters
    ----------
    a : ndarray of float32, shape (M, K), or (K, M) with ``trans_a=True``
        Any strides; C- or Fortran-ordered inputs are read in place, others copied once.
    b : ndarray of float32, shape (K, N), or (N, K) with ``trans_b=True``
    trans_a, trans_b : bool
    out : ndarray of float32, shape (M, N), optional
        Written in place (C-contiguous, writable, not overlapping a or b).
    n_threads : int or None
        Threads to use; None uses OpenMP's setting (``OMP_NUM_THREADS``, threadpoolctl).
        Small products run on one thread whatever is asked.

    Returns
    -------
    c : ndarray of float32, shape (M, N)
        Each element is one multiply-add chain over k in increasing order (fused on
        AVX2/AVX-512), so the result is bitwise identical for any thread count and a
        row does not depend on the other rows.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp.kernels import matmul
    >>> a = np.ones((2, 3), dtype=np.float32)
    >>> matmul(a, a, trans_b=True)
    array([[3., 3.],
           [3., 3.]], dtype=float32)
    """
    trans_a = bool(trans_a)
    trans_b = bool(trans_b)
    if n_threads is None:
        nt = 0
    elif type(n_threads) is int and 0 < n_threads <= _core.MAX_THREADS:  # no ABC checks
        nt = n_threads
    else:
        nt = _n_threads(n_threads)
    if type(a) is np.ndarray and type(b) is np.ndarray:
        # Fast path for the common case (float32, unit inner stride): the core checks
        # everything itself; anything it rejects is retried below with full validation
        # and, where possible, a view or copy it accepts.
        try:
            res = _core.matmul(a, b, trans_a, trans_b, nt, out)
        except (TypeError, ValueError):
            pass
        else:
            return out if out is not None else res
    a = _float_matrix(a, "a")
    b = _float_matrix(b, "b")
    ka = a.shape[0] if trans_a else a.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    if ka != kb:
        raise ValueError(
            f"matmul: inner dimensions differ: op(a) has {ka} columns, op(b) has {kb} rows "
            f"(a.shape={a.shape}, trans_a={trans_a}, b.shape={b.shape}, trans_b={trans_b})"
        )
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    if m == 0 or n == 0:  # nothing to compute; out is still checked
        if out is not None:
            _inplace(out, "out")
            if out.shape != (m, n):
                raise ValueError(f"out has shape {out.shape}, expected {(m, n)}")
            return out
        return np.empty((m, n), dtype=np.float32)
    a, trans_a = _as_kernel_operand(a, trans_a)
    b, trans_b = _as_kernel_operand(b, trans_b)
    res = _core.matmul(a, b, trans_a, trans_b, nt, out)
    return out if out is not None else res


@contextlib.contextmanager
def _isa(name):
    """Run the kernels with instruction set ``name`` ("avx512", "avx2", "generic") inside
    the block, lowered to what the CPU has; restores the previous choice. For tests and
    benchmarks: the setting is process-wide."""
    previous = _core.active_isa()
    _core.set_isa(name)
    try:
        yield _core.active_isa()
    finally:
        _core.set_isa(previous)


def _check_kind(kind):
    if not isinstance(kind, str) or kind not in ACTIVATIONS:
        raise ValueError(f"kind must be one of {sorted(ACTIVATIONS)}, got {kind!r}")
    return ACTIVATIONS[kind]


def _rows(x, name):
    """Any-shaped float32 array as a C-contiguous 2-D (rows, last axis) view or copy."""
    _float32(x, name)
    cols = x.shape[-1] if x.ndim else 1
    return np.ascontiguousarray(x).reshape(math.prod(x.shape[:-1]), cols)


def _dest(out, shape, name):
    """out as the 2-D view the core writes through, after checking it is a valid target."""
    if out is None:
        return None
    _inplace(out, name)
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    return out.reshape(math.prod(shape[:-1]), shape[-1] if len(shape) else 1)


def activation(x, kind="relu", *, out=None):
    """f(x) element-wise for kind in {"relu", "logistic", "tanh", "identity"}.

    Returns a new float32 array of x's shape, or writes ``out`` (which may be x itself).
    """
    code = _check_kind(kind)
    x2 = _rows(x, "x")
    res = _core.activation(x2, code, _dest(out, x.shape, "out"))
    return out if out is not None else res.reshape(x.shape)


def activation_backward(grad_out, out, kind="relu", *, grad_in=None):
    """grad_out * f'(z) given out = f(z) (the activation's output)."""
    code = _check_kind(kind)
    g2, y2 = _rows(grad_out, "grad_out"), _rows(out, "out")
    if grad_out.shape != out.shape:
        raise ValueError(f"grad_out {grad_out.shape} and out {out.shape} must have the same shape")
    res = _core.activation_backward(g2, y2, code, _dest(grad_in, grad_out.shape, "grad_in"))
    return grad_in if grad_in is not None else res.reshape(grad_out.shape)


def relu(x, *, out=None):
    """max(x, 0) element-wise (NaN propagates); float32 in, float32 out."""
    return activation(x, "relu", out=out)


def relu_backward(grad_out, out, *, grad_in=None):
    """grad_out where out > 0, else 0: the gradient through ReLU given its output ``out``."""
    return activation_backward(grad_out, out, "relu", grad_in=grad_in)


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, out=None):
    """Mean softmax cross-entropy and its gradient with respect to the logits, in one pass.

    Parameters
    ----------
    logits : ndarray of float32, shape (n, C)
    labels : array of int, shape (n,), values in [0, C)
    label_smoothing : float in [0, 1), default 0
        The target is ``(1 - label_smoothing) * onehot(y) + label_smoothing / C``.
    out : ndarray of float32, shape (n, C), optional
        Destination of the gradient (may be logits itself).

    Returns
    -------
    mean_loss : float
        mean_i (logsumexp(z_i) - sum_j q_ij z_ij), q the target, accumulated in double.
    grad : ndarray of float32, shape (n, C)
        (softmax(z) - q) / n.
    """
    z = _float_matrix(logits, "logits")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-dimensional, got shape {y.shape}")
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries but logits has {z.shape[0]} rows")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1]}), got [{y.min()}, {y.max()}]")
    if not (z.strides[1] == z.itemsize and z.strides[0] >= z.shape[1] * z.itemsize):
        z = np.ascontiguousarray(z)
    loss, grad = _core.softmax_cross_entropy(z, np.ascontiguousarray(y, dtype=np.int32),
                                             label_smoothing=float(label_smoothing),
                                             grad_out=_dest(out, z.shape, "out"))
    return loss, (out if out is not None else grad)


def _inplace(x, name):
    _float32(x, name, " (updated in place)")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    if not x.flags.writeable:
        raise ValueError(f"{name} must be writable (it is updated in place)")
    return x


def _same_shape(x, ref, name):
    x = np.asarray(x)
    if x.shape != ref.shape:
        raise ValueError(f"{name} has shape {x.shape}, param has {ref.shape}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    return np.asarray(x, order="C")  # ascontiguousarray would make a 0-d array 1-d


def sgd_step(param, grad, lr, *, velocity=None, momentum=0.0, nesterov=False, l2=0.0):
    """One SGD step in place: ``v = momentum*v - lr*g; param += v`` (or the Nesterov form).

    ``g = grad + l2 * param`` (the coupled L2 penalty's gradient). With ``velocity=None``
    (momentum 0): ``param -= lr * g``.
    """
    param = _inplace(param, "param")
    grad = _same_shape(grad, param, "grad")
    if velocity is not None:
        _inplace(velocity, "velocity")
        if velocity.shape != param.shape:
            raise ValueError(f"velocity has shape {velocity.shape}, param has {param.shape}")
    elif momentum != 0:
        raise ValueError("momentum != 0 needs a velocity array")
    _core.sgd_step(param, grad, lr=float(lr), velocity=velocity, momentum=float(momentum),
                   nesterov=bool(nesterov), l2=float(l2))


def adam_step(param, grad, m, v, t, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, l2=0.0):
    """One Adam step in place (scikit-learn's formulation); t is the 1-based step number.

    ``g = grad + l2 * param``, ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``param -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon)``.
    """
    param = _inplace(param, "param")
    grad = _same_shape(grad, param, "grad")
    for name, s in (("m", m), ("v", v)):
        _inplace(s, name)
        if s.shape != param.shape:
            raise ValueError(f"{name} has shape {s.shape}, param has {param.shape}")
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 1 <= t < 2**63:
        raise ValueError(f"t must be an integer in [1, 2**63), got {t!r}")
    config = _core.OptimConfig()
    config.solver = _core.Solver.adam
    config.learning_rate, config.beta_1, config.beta_2 = float(lr), float(beta_1), float(beta_2)
    config.epsilon = float(epsilon)
    _core.adam_step(param, grad, m, v, t=int(t), config=config, l2=float(l2))
