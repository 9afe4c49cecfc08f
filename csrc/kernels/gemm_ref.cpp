// The scalar reference GEMM: the determinism contract of gemm.hpp written as plainly as
// possible. Slow on purpose; used as the oracle and when no SIMD path applies.
#include <cmath>
#include <vector>

#include "kernels/activation.hpp"
#include "kernels/gemm.hpp"
#include "kernels/optim.hpp"

namespace fastmlp {

void gemm_store_block(const GemmArgs& p, index_t i0, index_t j0, index_t mr, index_t nr,
                      const float* tile, index_t ldt) {
  if (p.epilogue.fn != nullptr) {
    p.epilogue.fn(p.epilogue.ctx, i0, j0, mr, nr, tile, ldt);
    return;
  }
  for (index_t r = 0; r < mr; ++r) {
    float* crow = p.c + (i0 + r) * p.ldc + j0;
    const float* trow = tile + r * ldt;
    if (p.descent) {
      sgd_step(crow, trow, nr, p.descent_lr, nullptr, 0.0f, false, p.descent_wd);
      continue;
    }
    if (p.relu_gate != nullptr) {
      const float* o = p.relu_gate + (i0 + r) * p.ld_relu_gate + j0;
      for (index_t s = 0; s < nr; ++s) crow[s] = trow[s];
      activation_backward(Activation::ReLU, crow, p.ldc, o, p.ld_relu_gate, 1, nr);
      continue;
    }
    if (p.bias != nullptr) {
      for (index_t s = 0; s < nr; ++s) crow[s] = trow[s] + p.bias[j0 + s];
    } else {
      for (index_t s = 0; s < nr; ++s) crow[s] = trow[s];
    }
    activation_forward(p.act, crow, 1, nr, p.ldc);
  }
}

void gemm_reference(const GemmArgs& p) {
  std::vector<float> row(static_cast<size_t>(p.n > 0 ? p.n : 1));
  for (index_t i = 0; i < p.m; ++i) {
    for (index_t j = 0; j < p.n; ++j) {
      float s = 0.0f;
      for (index_t k = 0; k < p.k; ++k) {
        const float a = p.trans_a ? p.a[k * p.lda + i] : p.a[i * p.lda + k];
        const float b = p.trans_b ? p.b[j * p.ldb + k] : p.b[k * p.ldb + j];
        s = std::fma(a, b, s);
      }
      row[j] = s;
    }
    if (p.n > 0) gemm_store_block(p, i, 0, 1, p.n, row.data(), p.n);
  }
}

}  // namespace fastmlp
