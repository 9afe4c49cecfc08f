// Portable GEMM micro-kernels: the shared body (gemm_ukernel.inc) on 4-float vectors of
// plain C++ (GCC/Clang vector extensions, which the compiler maps onto whatever SIMD the
// target has; one float elsewhere). No FMA is assumed: multiply then add, same k order
// as the contract, so results agree with the reference to rounding, not bitwise.
#include <utility>

#include "kernels/gemm.hpp"
#include "kernels/gemm_kernel.hpp"

namespace fastmlp {

namespace {

#if defined(__GNUC__) || defined(__clang__)
constexpr int kVL = 4;
typedef float vec __attribute__((vector_size(16)));
inline vec v_zero() { return vec{0.0f, 0.0f, 0.0f, 0.0f}; }
inline vec v_bcast(const float* p) { return vec{*p, *p, *p, *p}; }
inline __attribute__((always_inline)) void v_prefetch(const float* p) { __builtin_prefetch(p); }
#else
constexpr int kVL = 1;
using vec = float;
inline vec v_zero() { return 0.0f; }
inline vec v_bcast(const float* p) { return *p; }
inline void v_prefetch(const float*) {}
#endif

inline vec v_load_n(const float* p, int n) {
  vec x = v_zero();
  for (int i = 0; i < kVL && i < n; ++i) reinterpret_cast<float*>(&x)[i] = p[i];
  return x;
}
inline vec v_load(const float* p) { return v_load_n(p, kVL); }
using lanes_t = int;
inline lanes_t v_lanes(int n) { return n; }
inline vec v_load_m(const float* p, lanes_t n) { return v_load_n(p, n); }
inline void v_store_n(float* p, vec x, int n) {
  for (int i = 0; i < kVL && i < n; ++i) p[i] = reinterpret_cast<const float*>(&x)[i];
}
inline void v_store(float* p, vec x) { v_store_n(p, x, kVL); }
// Built with -ffp-contract=off: a*b + c stays a rounded product and a rounded sum.
inline vec v_fma(vec a, vec b, vec c) { return a * b + c; }
inline vec v_add(vec a, vec b) { return a + b; }
inline vec v_mul(vec a, vec b) { return a * b; }
inline vec v_sub(vec a, vec b) { return a - b; }
inline vec v_relu(vec x) {
  for (int i = 0; i < kVL; ++i) {
    float& e = reinterpret_cast<float*>(&x)[i];
    e = e < 0.0f ? 0.0f : e;
  }
  return x;
}
inline vec v_gate(vec s, vec o) {
  for (int i = 0; i < kVL; ++i) {
    float& e = reinterpret_cast<float*>(&s)[i];
    e = reinterpret_cast<const float*>(&o)[i] > 0.0f ? e : 0.0f;
  }
  return s;
}

#include "kernels/gemm_ukernel.inc"

// Block sizes, portable. Tile 4 x 2 vectors (4 x 8 floats with 4-float vectors): 8
// accumulators of 16 bytes fit any SIMD register file. The same tile for every shape.
constexpr int kNV = 2;
constexpr GemmKernelSet kSet{
    "generic",
    gemm_tile<4, kNV>(),
    gemm_tile<4, kNV>(),
    gemm_tile<4, kNV>(),
    256, 64, 1024, 128};

}  // namespace

static_assert(kGemmPanel % kSet.wide.nr == 0 && kGemmPanel % kSet.narrow.nr == 0,
              "thread panels must hold whole register tiles");

const GemmKernelSet& gemm_kernels_generic() { return kSet; }

}  // namespace fastmlp
