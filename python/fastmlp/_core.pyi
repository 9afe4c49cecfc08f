"""Type stubs of fastmlp's compiled core (csrc/bindings.cpp). Private: the estimators and
fastmlp.kernels are its only callers; the tests reach the hooks in ``testing``."""

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

class Activation:
    identity: ClassVar[Activation]
    relu: ClassVar[Activation]
    logistic: ClassVar[Activation]
    tanh: ClassVar[Activation]
    __members__: ClassVar[dict[str, Activation]]
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Solver:
    sgd: ClassVar[Solver]
    adam: ClassVar[Solver]
    __members__: ClassVar[dict[str, Solver]]
    @property
    def name(self) -> str: ...

# Display label of each activation ("ReLU", "Sigmoid", ...).
ACTIVATION_LABELS: dict[str, str]
# Every optimizer state slot the core knows ("velocity", "first_moment", ...).
STATE_SLOTS: list[str]
openmp: bool

class OptimConfig:
    solver: Solver
    nesterov: bool
    learning_rate: float
    momentum: float
    alpha: float
    beta_1: float
    beta_2: float
    epsilon: float
    def __init__(self) -> None: ...
    def slots(self) -> list[str]: ...

class TrainOptions:
    seed: int
    dropout: list[float]
    label_smoothing: float
    image: tuple[int, int, int, bool]
    random_shift: int
    random_flip: bool
    def __init__(self) -> None: ...

class PixelInput:
    """X (N, D) in its own dtype, scaled per pixel as float32((x - offset) / scale)."""
    def __init__(self, X: np.ndarray, *, offset: NDArray[np.float64] | None = None,
                 scale: NDArray[np.float64] | None = None, channels_last: bool = True) -> None: ...
    @property
    def shape(self) -> tuple[int, int]: ...

class ChunkResult:
    @property
    def loss_sum(self) -> float: ...
    @property
    def weight_sum(self) -> float: ...
    @property
    def n_correct(self) -> int: ...
    @property
    def n_samples(self) -> int: ...
    @property
    def n_batches(self) -> int: ...
    @property
    def t(self) -> int: ...
    @property
    def finite(self) -> bool: ...

def matmul(a: F32, b: F32, trans_a: bool, trans_b: bool, n_threads: int,
           out: F32 | None = None) -> F32: ...
def activation(x: F32, act: Activation, out: F32 | None = None) -> F32: ...
def activation_backward(grad_out: F32, out: F32, act: Activation,
                        grad_in: F32 | None = None) -> F32: ...
def softmax_cross_entropy(logits: F32, labels: NDArray[np.int32],
                          grad_out: F32 | None = None) -> tuple[float, F32]: ...
def sgd_step(param: F32, grad: F32, *, lr: float, velocity: F32 | None, momentum: float,
             nesterov: bool, l2: float) -> None: ...
def adam_step(param: F32, grad: F32, m: F32, v: F32, *, t: int, config: OptimConfig,
              l2: float) -> None: ...
def train_batches(*, coefs: list[F32], intercepts: list[F32],
                  state: dict[str, tuple[list[F32], list[F32]]], X: F32 | PixelInput,
                  y: NDArray[np.int32], sample_weight: F32 | None, order: NDArray[np.int64],
                  batch_size: int, activation: Activation, optimizer: OptimConfig,
                  options: TrainOptions, steps: NDArray[np.int64], totals: NDArray[np.float64],
                  n_threads: int, sample_rows: NDArray[np.int64] | None = None) -> ChunkResult: ...
def predict_proba(coefs: list[F32], intercepts: list[F32], X: F32 | PixelInput, *,
                  activation: Activation, log: bool, n_threads: int,
                  rows: NDArray[np.int64] | None = None) -> F32: ...
def detected_isa() -> str: ...
def active_isa() -> str: ...
def set_isa(isa: str) -> None: ...
def bf16_hardware() -> bool: ...
def detected_bf16_kernel() -> str: ...
def active_bf16_kernel() -> str: ...
def set_bf16_kernel(kernel: str) -> None: ...
def max_threads() -> int: ...
