"""Type stubs of ``fastmlp._core.testing`` (csrc/bindings_testing.cpp): test-only hooks."""

import numpy as np
from numpy.typing import NDArray

from ._core import Activation

F32 = NDArray[np.float32]

def matmul(a: F32, b: F32, *, trans_a: bool = False, trans_b: bool = False,
           n_threads: int = 0, reference: bool = False, out: F32 | None = None,
           bias: F32 | None = None, activation: Activation = ...,
           tile_epilogue: bool = False, exact_threads: bool = False,
           descent: tuple[float, float] | None = None,
           relu_gate: F32 | None = None) -> F32: ...
def dropout_mask(seed: int, step: int, samples: NDArray[np.int64], layer: int, width: int,
                 rate: float) -> NDArray[np.uint8]: ...
def augment_rows(X: F32, samples: NDArray[np.int64], *, seed: int, step: int,
                 image: tuple[int, int, int, bool], shift: int,
                 flip: bool) -> tuple[F32, NDArray[np.int64]]: ...
def pixel_rows(X: object, rows: NDArray[np.int64], out: F32) -> None: ...
def pixel_rows_bf16(X: object, rows: NDArray[np.int64], kp: int) -> NDArray[np.uint16]: ...
