// fastmlp/csrc/isa.hpp — which SIMD instruction set the kernels run with.
//
// Detected once at first use from CPUID (and the OS's saved-state mask). The environment
// variable FASTMLP_ISA=avx512|avx2|generic lowers the choice (never raises it past what
// the CPU supports), so tests can exercise every path on one machine. The names are
// spelled here only: parse_isa and isa_name are the one mapping, used by the environment
// lookup and by the Python binding alike.
#pragma once

namespace fastmlp {

enum class Isa : int { Generic = 0, AVX2 = 1, AVX512 = 2 };

Isa detected_isa();        // best the CPU and this build support
Isa active_isa();          // detected_isa(), possibly lowered by FASTMLP_ISA or set_isa
void set_isa(Isa isa);     // clamps to detected_isa(); for tests and benchmarks
const char* isa_name(Isa isa);
// The Isa named `name` ("avx512", "avx2", "generic"); false for any other name.
bool parse_isa(const char* name, Isa* isa);
// The valid names, for error messages: "'avx512', 'avx2' or 'generic'".
const char* isa_names();

}  // namespace fastmlp
