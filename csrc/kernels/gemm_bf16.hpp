// fastmlp/csrc/kernels/gemm_bf16.hpp — the bfloat16 matrix product, the contract.
//
// Legend: C (M, N) = A (M, K) · B (K, N), A and B bfloat16 in the layouts of bf16.hpp
// (A "rows", row stride lda; B "pairs", ldb padded columns), sums in float32.
//
// Operands (the packers of bf16.hpp produce them; nothing is checked here):
//   K is a multiple of kBf16KStep (32), the padding holding zeros in A's columns and B's
//     rows, so it adds exact zeros;
//   A has bf16_pad(M, kBf16MStep) readable rows: the AMX kernel loads whole tiles, and rows
//     past M (any value) only reach sums that are never delivered;
//   B has ldb >= bf16_pad(N, kBf16NStep) readable columns, likewise.
//
// Arithmetic. Every element is ONE chain over the pairs p = 0, 1, ..., K/2 - 1 in order,
// from +0.0f, two float32 fused multiply-adds per pair, the odd k first:
//   s = fma(A[i][2p+1], B[2p+1][j], s);  s = fma(A[i][2p], B[2p][j], s)
// with bfloat16 denormal inputs read as zero, a denormal result flushed to zero and round
// to nearest even — the instruction vdpbf16ps of AVX512-BF16, lane by lane. The
// AVX512-BF16 kernel and the scalar reference (the emulation below) compute exactly this,
// so they agree bitwise whatever the thread count or tile. The AMX kernel (tdpbf16ps)
// sums each 32-wide step of k inside the tile unit in an order of its own, then adds the
// step to the running float32 sum: close to the chain (tests bound the difference) and
// bitwise reproducible for any thread count, since every element still has one chain
// of steps in a fixed order.
//
// Epilogue, threads: as sgemm (gemm.hpp). `epi` carries the built-in or custom epilogue
// (its c, ldc, bias, act, descent, relu_gate, epilogue; m, n, k and the operands are
// ignored); finished blocks go through gemm_store_block. bgemm(args, ith, nth) computes
// thread ith's static share; blocks are at most 64 x 128 and lie in one thread's share.
#pragma once

#include "kernels/bf16.hpp"
#include "kernels/gemm.hpp"

namespace fastmlp {

struct Bf16GemmArgs {
  index_t m = 0, n = 0, k = 0;
  const bf16_t* a = nullptr;  // rows layout (M, K), stride lda
  index_t lda = 0;
  const bf16_t* b = nullptr;  // pairs layout (K, N), ldb columns
  index_t ldb = 0;
  GemmArgs epi;               // what is done with each finished sum
};

// The kernels, best first; chosen once from CPUID and the operating system's permission
// (AMX needs Linux to enable its tile state for the process: arch_prctl
// ARCH_REQ_XCOMP_PERM; refused, the choice falls back to AVX512-BF16). The environment
// variable FASTMLP_BF16_KERNEL=amx|avx512bf16|reference lowers the choice, never past
// what the CPU supports.
enum class Bf16Kernel : int { Reference = 0, AVX512BF16 = 1, AMX = 2 };

Bf16Kernel detected_bf16_kernel();  // best the CPU, the OS and this build support
Bf16Kernel active_bf16_kernel();    // detected, possibly lowered (environment, set_bf16_kernel)
void set_bf16_kernel(Bf16Kernel k);  // clamps to detected; for tests and benchmarks
const char* bf16_kernel_name(Bf16Kernel k);
bool parse_bf16_kernel(const char* name, Bf16Kernel* k);
// The valid names, for error messages: "'amx', 'avx512bf16' or 'reference'".
const char* bf16_kernel_names();
// True when bfloat16 products run on hardware (not the scalar emulation): what training
// and prediction in bfloat16 require.
bool bf16_hardware();

// Thread ith's share of the product; see the contract above.
void bgemm(const Bf16GemmArgs& args, int ith, int nth);

// The scalar emulation of the chain, single-threaded, the same epilogue: the oracle of
// the tests and the kernel of CPUs without bfloat16 instructions.
void bgemm_reference(const Bf16GemmArgs& args);

// One step of the chain: fma(a, b, s) with vdpbf16ps's denormal rules.
float bf16_fma(bf16_t a, bf16_t b, float s);

}  // namespace fastmlp
