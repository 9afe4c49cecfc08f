// fastmlp/csrc/cpu.hpp — which SIMD instruction set the kernels run with.
//
// Detected once at first use from CPUID (and the OS's saved-state mask). The environment
// variable FASTMLP_ISA=avx512|avx2|generic lowers the choice (never raises it past what
// the CPU supports), so tests can exercise every path on one machine.
#pragma once

namespace fastmlp {

enum class Isa : int { Generic = 0, AVX2 = 1, AVX512 = 2 };

Isa detected_isa();        // best the CPU and this build support
Isa active_isa();          // detected_isa(), possibly lowered by FASTMLP_ISA or set_isa
void set_isa(Isa isa);     // clamps to detected_isa(); for tests and benchmarks
const char* isa_name(Isa isa);

}  // namespace fastmlp
