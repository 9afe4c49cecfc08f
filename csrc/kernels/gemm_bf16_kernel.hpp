// fastmlp/csrc/kernels/gemm_bf16_kernel.hpp — what a bfloat16 kernel contributes to the
// driver (gemm_bf16.cpp). Internal to gemm_bf16*.cpp.
#pragma once

#include "kernels/gemm_bf16.hpp"

namespace fastmlp {

// The sums of C[i0 : i0+mc, j0 : j0+nc] (the whole K) into t[r*ldt + c]. mc <= kBf16BlockM
// and nc <= kBf16BlockN; t has room for both rounded up to 32, and entries past (mc, nc)
// may be written with sums of padding.
using Bf16BlockKernel = void (*)(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0,
                                 index_t nc, float* t, index_t ldt);

constexpr index_t kBf16BlockM = 64, kBf16BlockN = 128;

// Defined by gemm_bf16_avx512.cpp and gemm_bf16_amx.cpp (x86-64 builds only).
void bf16_block_avx512(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                       float* t, index_t ldt);
void bf16_block_amx(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                    float* t, index_t ldt);
// Loads the AMX tile configuration on the calling thread (before its first block of a
// product) and releases the tile state (after its last).
void amx_begin();
void amx_end();
// The packers of bf16.hpp with the conversion instruction (the same results: the tests
// check to_bf16 against the instruction), used where the CPU has it.
void bf16_pack_rows_avx512(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                           index_t kp, bf16_t* dst, index_t ldd);
void bf16_pack_pairs_avx512(const float* src, index_t lds, index_t r0, index_t r1, index_t cols,
                            bf16_t* dst, index_t ldb);
void bf16_pack_transposed_avx512(const float* src, index_t lds, index_t r0, index_t r1,
                                 index_t cols, bf16_t* dst, index_t ldd);
void bf16_pack_pairs_transposed_avx512(const float* src, index_t lds, index_t r0, index_t r1,
                                       index_t cols, index_t kp, bf16_t* dst, index_t ldb);

void bf16_transpose_avx512(const bf16_t* src, index_t lds, index_t rows, index_t c0,
                           index_t c1, bf16_t* dst, index_t ldd);
void bf16_sgd_step_pack_avx512(float* W, index_t ldw, const float* s, index_t lds, index_t h,
                               index_t n, float lr, float l2, bf16_t* wp, index_t ldwp);

// n floats to bfloat16 with the hardware conversion (vcvtneps2bf16): the tests check
// to_bf16 against it.
void bf16_convert_hardware(const float* src, index_t n, bf16_t* dst);
// One vdpbf16ps lane: s + a·b over one pair, by the instruction (the tests check
// bf16_fma's emulation against it).
float bf16_dot_pair_hardware(const bf16_t a[2], const bf16_t b[2], float s);

}  // namespace fastmlp
