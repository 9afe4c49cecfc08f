// fastmlp/csrc/kernels/gemm.hpp — single-precision matrix product, the contract.
//
// Legend: M, N, K are the dimensions of op(A) (M, K), op(B) (K, N) and the product (M, N).
// Storage is row-major with leading dimensions (row strides, in elements) lda, ldb, ldc:
//   op(A)[i][k] = trans_a ? a[k*lda + i] : a[i*lda + k]      (a is (M,K) or (K,M))
//   op(B)[k][j] = trans_b ? b[j*ldb + k] : b[k*ldb + j]      (b is (K,N) or (N,K))
// Training uses three shapes: X·W (NN, forward), G·Wᵀ (NT, input gradient), Xᵀ·G (TN,
// weight gradient).
//
// Arithmetic (the determinism contract). Every product element is ONE fused-multiply-add
// chain over k = 0, 1, ..., K-1 in increasing order, starting from +0.0f:
//   s = 0; for k: s = fma(op(A)[i][k], op(B)[k][j], s)
// on the AVX2 and AVX-512 paths, whatever the thread count, the tile an element falls in,
// the matrix sizes or any cache blocking (a K-block continues the chain from the stored
// partial sum). So results are bitwise identical to gemm_reference() (the scalar std::fma
// chain), across thread counts, and a row's result does not depend on the other rows.
// The portable path (no FMA hardware) uses the same order with separate multiply and add.
// K == 0 gives s = 0.
//
// Epilogue. Once an element's sum s is complete it is delivered exactly once:
//   * built-in:  c[i*ldc + j] = act(s + bias[j])   (bias may be null: s alone;
//                act is applied with activation_forward, Identity = none), or with
//                `descent`: c[i*ldc + j] -= lr * (s + wd * c[i*ldc + j]), the plain SGD
//                step on a weight matrix stored in c, applied while s is in registers
//                (sgd_step's operations in its order, so the two agree bitwise), or with
//                `relu_gate`: c[i*ldc + j] = relu_gate[i*ld_relu_gate + j] > 0 ? s : +0.0f,
//                the gradient through a ReLU layer whose outputs are relu_gate
//                (activation_backward's rule, so the two agree bitwise)
//   * custom:    epilogue.fn(ctx, i0, j0, mr, nr, tile, ldt) receives a finished block
//                tile[r*ldt + s] = sum for element (i0 + r, j0 + s), r < mr, s < nr.
//                It may read and write anything it owns for exactly that block of
//                (i, j) (the fused optimizer step updates W[i0.., j0..] there).
//                c, bias and act are then ignored.
//
//                Blocks lie inside one thread's share and are at most MC x NC
//                (112 x 1024 with AVX-512), delivered in a fixed order.
//
// Threads. sgemm() is called by every thread of an enclosing parallel region with its own
// (ith, nth), 0 <= ith < nth; it computes a static, deterministic share of the output
// (a rectangle of whole register tiles: rows for the 784 x 256 weight gradient, columns
// for a 64 x 256 batch product), so each output element has exactly one writer. It
// never synchronizes and opens no parallel region: the caller puts a barrier after it
// before anyone reads C. Packing buffers are per thread (thread_local, grown once, never
// shrunk), so there is no allocation in steady state. Every thread must see the same
// active_isa() (do not call set_isa while a product runs). sgemm_parallel() opens its
// own region for callers outside one, and runs small products (< 1 MFLOP) on the
// calling thread.
//
// Implementation: gemm.cpp (partition, cache blocking, packing, ISA dispatch),
// gemm_kernel.hpp (what an ISA provides), gemm_ukernel.inc (the micro-kernel body),
// gemm_avx512.cpp / gemm_avx2.cpp / gemm_generic.cpp (tiles and block sizes per ISA).
//
// Bad input. sgemm trusts its arguments (checked by the caller): m, n, k >= 0, pointers
// valid for the shapes, lda >= (trans_a ? M : K), etc. C must not alias A or B.
#pragma once

#include "common.hpp"

namespace fastmlp {

// Column panels that callers hand to different threads (the training loop splits W0 by
// them) are multiples of kGemmPanel columns: a multiple of every ISA's register-tile
// width NR (checked in each gemm_<isa>.cpp), so no register tile straddles two threads.
constexpr index_t kGemmPanel = 32;

struct TileEpilogue {
  void (*fn)(void* ctx, index_t i0, index_t j0, index_t mr, index_t nr, const float* tile,
             index_t ldt) = nullptr;
  void* ctx = nullptr;
};

struct GemmArgs {
  index_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  index_t lda = 0;
  bool trans_a = false;
  const float* b = nullptr;
  index_t ldb = 0;
  bool trans_b = false;
  // Built-in epilogue.
  float* c = nullptr;
  index_t ldc = 0;
  const float* bias = nullptr;  // (N,) or null
  Activation act = Activation::Identity;
  // Built-in descent epilogue (replaces bias and act): c holds W (M, N) and is updated
  // in place with the plain SGD step c = c - lr * (s + wd * c), s being its gradient.
  bool descent = false;
  float descent_lr = 0.0f, descent_wd = 0.0f;
  // Built-in ReLU-backward epilogue (replaces bias and act): relu_gate (M, N) holds the
  // outputs of a ReLU layer, row stride ld_relu_gate; c = s where the output is > 0,
  // +0.0f elsewhere.
  const float* relu_gate = nullptr;
  index_t ld_relu_gate = 0;
  // Custom epilogue; when epilogue.fn is set it replaces the built-in one.
  TileEpilogue epilogue;
};

// This thread's share of the product. See the contract above.
void sgemm(const GemmArgs& args, int ith, int nth);

// Opens a parallel region of n_threads (<= 0: default_num_threads()) and runs sgemm;
// small products run on the calling thread unless small_serial is false (tests use that
// to exercise the partition of tiny shapes).
void sgemm_parallel(const GemmArgs& args, int n_threads, bool small_serial = true);

// The portable reference: the scalar std::fma chain of the contract, single-threaded,
// same epilogue semantics. The test oracle (reached through _core.testing); the
// run-time fallback on CPUs without FMA is the generic micro-kernel, not this.
void gemm_reference(const GemmArgs& args);

// Testing: the n-th request for packing buffers from now on (any thread, n >= 1) throws
// std::bad_alloc as a failed allocation would, so that out-of-memory paths can be tested;
// n = 0 disarms. One relaxed atomic load per product when disarmed.
void gemm_fail_workspace_request(long n);

// Apply the built-in epilogue to a finished block (shared by every implementation).
void gemm_store_block(const GemmArgs& args, index_t i0, index_t j0, index_t mr, index_t nr,
                      const float* tile, index_t ldt);

}  // namespace fastmlp
