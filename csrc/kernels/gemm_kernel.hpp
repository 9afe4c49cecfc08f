// fastmlp/csrc/kernels/gemm_kernel.hpp — what one instruction set contributes to the GEMM:
// its register tile, its cache-block sizes and its micro-kernels. Internal to gemm*.cpp.
//
// Legend (as in gemm.hpp): a micro-kernel computes one MR x NR tile of the product over a
// run of kc steps of k. Its operands:
//   A tile  (MR, kc): element (r, p) at a[p*as + r]  ("column-stepped": a packed panel with
//                     as = MR, or op(A) of a transposed operand with as = lda), or at
//                     a[r*as + p]                   ("row-stepped": a row-major operand);
//   B panel (kc, NR): element (p, j) at b[p*bs + j]  (a packed panel with bs = NR, or a
//                     row-major operand used in place with bs = ldb);
//   C tile  (m, n) <= (MR, NR) at c[r*ldc + j].
// All MR rows of A and all NR columns of B are read, so edge tiles come zero-padded from
// packing; only C is masked to its m rows and n columns.
#pragma once

#include "common.hpp"

namespace fastmlp {

// Epilogue the micro-kernel may apply as it stores (finished sums only):
// c = act(s + bias[j]) for act in {Identity, ReLU}, the same operations in the same order
// as gemm_store_block, so results match it bitwise.
struct GemmStoreOp {
  const float* bias = nullptr;  // (n,) for this tile's columns, or null
  bool relu = false;
};

// c[r*ldc + j] = chain(k steps), starting from c's current value when `accumulate`
// (a continued K block) or from +0.0f; then `op` when non-null.
using GemmMicroKernel = void (*)(index_t kc, const float* a, index_t as, const float* b,
                                 index_t bs, float* c, index_t ldc, int m, int n,
                                 bool accumulate, const GemmStoreOp* op);

struct GemmKernelSet {
  const char* name;
  int mr, nr;             // register tile
  index_t kc, mc, nc;     // cache blocks: k run per tile, rows and columns per block
  GemmMicroKernel a_col;  // A column-stepped (packed panel or transposed operand)
  GemmMicroKernel a_row;  // A row-stepped (row-major operand used in place)
};

// Defined by gemm_avx512.cpp / gemm_avx2.cpp (x86-64 builds only) and gemm_generic.cpp.
const GemmKernelSet& gemm_kernels_avx512();
const GemmKernelSet& gemm_kernels_avx2();
const GemmKernelSet& gemm_kernels_generic();

}  // namespace fastmlp
