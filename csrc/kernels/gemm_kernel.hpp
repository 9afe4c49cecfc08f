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
// A kernel built for m rows reads exactly m rows of A; of B and C it reads and writes only
// the first n columns (masked vector loads and stores), so edges need no padding.
#pragma once

#include "common.hpp"

namespace fastmlp {

// Epilogue the micro-kernel may apply as it stores (finished sums only), the same
// operations in the same order as gemm_store_block, so results match it bitwise:
//   c = act(s + bias[j]) for act in {Identity, ReLU}, or, with `descent`,
//   c = c - lr * (s + wd * c)    (c holds W: the plain SGD step of optim.hpp on W), or,
//   with `gate`, c = gate[r*ldgate + j] > 0 ? s : +0.0f   (ReLU backward)
struct GemmStoreOp {
  const float* bias = nullptr;  // (n,) for this tile's columns, or null
  bool relu = false;
  bool descent = false;
  float lr = 0.0f, wd = 0.0f;
  const float* gate = nullptr;  // (m, n) for this tile, row stride ldgate, or null
  index_t ldgate = 0;
};

// c[r*ldc + j] = chain(k steps), starting from c's current value when `accumulate`
// (a continued K block) or from +0.0f; then `op` when non-null.
using GemmMicroKernel = void (*)(index_t kc, const float* a, index_t as, const float* b,
                                 index_t bs, float* c, index_t ldc, int m, int n,
                                 bool accumulate, const GemmStoreOp* op);

constexpr int kGemmMaxMR = 16;

// A register tile MR x NR and its kernels. a_col[m] / a_row[m] (1 <= m <= MR) compute
// m-row tiles: the last rows of a product run with exactly their own row count instead
// of zero padding (64 rows = 4 x 14 + 8), and read only the m rows that exist.
struct GemmTile {
  int mr, nr;
  GemmMicroKernel a_col[kGemmMaxMR + 1];  // A column-stepped (packed, or transposed operand)
  GemmMicroKernel a_row[kGemmMaxMR + 1];  // A row-stepped (row-major operand in place)
};

struct GemmKernelSet {
  const char* name;
  GemmTile wide;          // the main tile
  GemmTile narrow;        // for N <= narrow.nr (may equal wide)
  GemmTile row;           // for M <= row.mr and N > narrow.nr: one image's prediction
                          // (its NR need not divide kGemmPanel: a thread's panel is then
                          // a product of its own, and a short row tile covers it)
  index_t kc, mc, nc;     // cache blocks: k run per tile, rows and columns per block
  index_t pack_b_rows;    // a row-major B is packed from this many product rows on
};

// Thread ith's rectangle [i0, i1) x [j0, j1) of an M x N product tiled MR x NR (gemm.cpp):
// static and deterministic; whole tiles, every element in exactly one rectangle.
struct Rect {
  index_t i0, i1, j0, j1;
};
Rect gemm_partition(index_t M, index_t N, index_t MR, index_t NR, int ith, int nth);

// Defined by gemm_avx512.cpp / gemm_avx2.cpp (x86-64 builds only) and gemm_generic.cpp.
const GemmKernelSet& gemm_kernels_avx512();
const GemmKernelSet& gemm_kernels_avx2();
const GemmKernelSet& gemm_kernels_generic();

}  // namespace fastmlp
