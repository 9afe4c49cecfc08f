#include "isa.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

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
  Isa want = best;  // an unknown name keeps the best (the variable only ever lowers)
  parse_isa(s, &want);
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

constexpr Isa kAll[] = {Isa::AVX512, Isa::AVX2, Isa::Generic};

bool parse_isa(const char* name, Isa* isa) {
  for (Isa candidate : kAll)
    if (std::strcmp(name, isa_name(candidate)) == 0) {
      *isa = candidate;
      return true;
    }
  return false;
}

const char* isa_names() {
  static const std::string names = [] {
    std::string s;
    const int n = static_cast<int>(sizeof kAll / sizeof kAll[0]);
    for (int i = 0; i < n; ++i)
      s += (i == 0 ? "'" : i + 1 == n ? " or '" : ", '") + std::string(isa_name(kAll[i])) + "'";
    return s;
  }();
  return names.c_str();
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::AVX512: return "avx512";
    case Isa::AVX2: return "avx2";
    default: return "generic";
  }
}

}  // namespace fastmlp
