// AVX-512 micro-kernel (to come).
#include "kernels/gemm.hpp"
