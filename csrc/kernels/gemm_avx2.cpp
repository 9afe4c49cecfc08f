// AVX2+FMA micro-kernel (to come).
#include "kernels/gemm.hpp"
