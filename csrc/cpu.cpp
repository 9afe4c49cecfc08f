#include "cpu.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace fastmlp {

namespace {

Isa probe() {
#if defined(FASTMLP_X86_64) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma"))
    return Isa::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::AVX2;
#endif
  return Isa::Generic;
}

Isa from_env(Isa best) {
  const char* s = std::getenv("FASTMLP_ISA");
  if (s == nullptr || *s == '\0') return best;
  Isa want = best;
  if (std::strcmp(s, "generic") == 0) want = Isa::Generic;
  else if (std::strcmp(s, "avx2") == 0) want = Isa::AVX2;
  else if (std::strcmp(s, "avx512") == 0) want = Isa::AVX512;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

std::atomic<int> g_active{-1};

}  // namespace

Isa detected_isa() {
  static const Isa best = probe();
  return best;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(from_env(detected_isa()));
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_isa(Isa isa) {
  const Isa best = detected_isa();
  const Isa v = static_cast<int>(isa) < static_cast<int>(best) ? isa : best;
  g_active.store(static_cast<int>(v), std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::AVX512: return "avx512";
    case Isa::AVX2: return "avx2";
    default: return "generic";
  }
}

}  // namespace fastmlp
