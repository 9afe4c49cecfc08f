// bfloat16 GEMM driver: kernel choice, the thread partition, the block loop around the
// kernels, and the scalar emulation (gemm_bf16.hpp).
#include "kernels/gemm_bf16.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "isa.hpp"
#include "kernels/gemm_bf16_kernel.hpp"
#include "kernels/gemm_kernel.hpp"

#if defined(FASTMLP_X86_64) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fastmlp {

namespace {

#if defined(FASTMLP_X86_64) && defined(__linux__)
bool cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1u;
}
constexpr int kEax = 0, kEdx = 3;

// Linux keeps AMX's 8 KiB tile state off until a process asks for it; a refusal (an old
// kernel, a sandbox) leaves AVX512-BF16.
bool amx_permitted() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}
#endif

Bf16Kernel probe() {
#if defined(FASTMLP_X86_64) && defined(__linux__)
  if (detected_isa() != Isa::AVX512) return Bf16Kernel::Reference;  // zmm state saved by the OS
  if (!cpuid_bit(7, 1, kEax, 5)) return Bf16Kernel::Reference;     // AVX512_BF16
  const bool amx = cpuid_bit(7, 0, kEdx, 22) && cpuid_bit(7, 0, kEdx, 24);  // AMX-BF16, TILE
  if (amx && amx_permitted()) return Bf16Kernel::AMX;
  return Bf16Kernel::AVX512BF16;
#else
  return Bf16Kernel::Reference;
#endif
}

Bf16Kernel clamp(Bf16Kernel k) {
  return static_cast<int>(k) < static_cast<int>(detected_bf16_kernel()) ? k
                                                                        : detected_bf16_kernel();
}

std::atomic<int> g_active{-1};

constexpr Bf16Kernel kAll[] = {Bf16Kernel::AMX, Bf16Kernel::AVX512BF16, Bf16Kernel::Reference};

// Per-thread block of sums, grown once (kBf16BlockM x kBf16BlockN floats).
float* block_buffer() {
  thread_local std::vector<float, CacheAlignedAllocator<float>> buf(
      static_cast<size_t>(kBf16BlockM * kBf16BlockN));
  return buf.data();
}

void reference_block(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                     float* t, index_t ldt) {
  for (index_t r = 0; r < mc; ++r)
    for (index_t c = 0; c < nc; ++c) {
      const bf16_t* a = p.a + (i0 + r) * p.lda;
      const bf16_t* b = p.b + 2 * (j0 + c);
      float s = 0.0f;
      for (index_t q = 0; q < p.k / 2; ++q) {
        s = bf16_fma(a[2 * q + 1], b[q * 2 * p.ldb + 1], s);
        s = bf16_fma(a[2 * q], b[q * 2 * p.ldb], s);
      }
      t[r * ldt + c] = s;
    }
}

Bf16BlockKernel block_kernel(Bf16Kernel k) {
#if defined(FASTMLP_X86_64)
  if (k == Bf16Kernel::AMX) return bf16_block_amx;
  if (k == Bf16Kernel::AVX512BF16) return bf16_block_avx512;
#endif
  (void)k;
  return reference_block;
}

void run_blocks(const Bf16GemmArgs& p, Bf16Kernel kind, const Rect& R) {
  const Bf16BlockKernel block = block_kernel(kind);
  float* t = block_buffer();
#if defined(FASTMLP_X86_64)
  if (kind == Bf16Kernel::AMX) amx_begin();
#endif
  for (index_t jc = R.j0; jc < R.j1; jc += kBf16BlockN) {
    const index_t nc = std::min(kBf16BlockN, R.j1 - jc);
    for (index_t ic = R.i0; ic < R.i1; ic += kBf16BlockM) {
      const index_t mc = std::min(kBf16BlockM, R.i1 - ic);
      block(p, ic, mc, jc, nc, t, kBf16BlockN);
      gemm_store_block(p.epi, ic, jc, mc, nc, t, kBf16BlockN);
    }
  }
#if defined(FASTMLP_X86_64)
  if (kind == Bf16Kernel::AMX) amx_end();
#endif
}

}  // namespace

float bf16_fma(bf16_t a, bf16_t b, float s) {
  const auto daz = [](float x) { return std::fabs(x) < 1.17549435e-38f ? 0.0f * x : x; };
  const float r = std::fma(daz(from_bf16(a)), daz(from_bf16(b)), daz(s));
  return daz(r);  // a denormal result is flushed to zero, sign kept
}

Bf16Kernel detected_bf16_kernel() {
  static const Bf16Kernel best = probe();
  return best;
}

Bf16Kernel active_bf16_kernel() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    Bf16Kernel k = detected_bf16_kernel();
    const char* s = std::getenv("FASTMLP_BF16_KERNEL");
    if (s != nullptr && *s != '\0') parse_bf16_kernel(s, &k);  // unknown names keep the best
    v = static_cast<int>(clamp(k));
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Bf16Kernel>(v);
}

void set_bf16_kernel(Bf16Kernel k) {
  g_active.store(static_cast<int>(clamp(k)), std::memory_order_relaxed);
}

bool bf16_hardware() { return active_bf16_kernel() != Bf16Kernel::Reference; }

const char* bf16_kernel_name(Bf16Kernel k) {
  switch (k) {
    case Bf16Kernel::AMX: return "amx";
    case Bf16Kernel::AVX512BF16: return "avx512bf16";
    default: return "reference";
  }
}

const char* bf16_kernel_names() { return "'amx', 'avx512bf16' or 'reference'"; }

bool parse_bf16_kernel(const char* name, Bf16Kernel* k) {
  for (Bf16Kernel candidate : kAll)
    if (std::strcmp(name, bf16_kernel_name(candidate)) == 0) {
      *k = candidate;
      return true;
    }
  return false;
}

void bgemm(const Bf16GemmArgs& p, int ith, int nth) {
  if (p.m <= 0 || p.n <= 0 || ith < 0 || ith >= nth) return;
  // 32 x 32 tiles for every kernel: a thread's rows start on a 32-row boundary, which the
  // AMX kernel's two-tile loads need; the other kernels take any rows.
  const Rect R = gemm_partition(p.m, p.n, kBf16MStep, kBf16NStep, ith, nth);
  if (R.i1 <= R.i0 || R.j1 <= R.j0) return;
  run_blocks(p, active_bf16_kernel(), R);
}

void bgemm_reference(const Bf16GemmArgs& p) {
  if (p.m <= 0 || p.n <= 0) return;
  run_blocks(p, Bf16Kernel::Reference, Rect{0, p.m, 0, p.n});
}

}  // namespace fastmlp
