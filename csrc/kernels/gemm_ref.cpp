// The scalar reference GEMM: the determinism contract of gemm.hpp written as plainly as
// possible. Slow on purpose: the tests' oracle. Its epilogue is the driver's
// gemm_store_block, so the two agree on every built-in epilogue.
#include <cmath>
#include <vector>

#include "kernels/gemm.hpp"

namespace fastmlp {

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
