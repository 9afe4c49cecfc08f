#include "kernels/loss.hpp"

#include <cmath>

namespace fastmlp {

namespace {

// max_j z_j, and the first index attaining it (NaN never wins, like a plain loop would).
inline float row_max(const float* z, index_t c, index_t* arg) {
  float m = z[0];
  index_t a = 0;
  for (index_t j = 1; j < c; ++j)
    if (z[j] > m) m = z[j], a = j;
  *arg = a;
  return m;
}

}  // namespace

void softmax_cross_entropy(const float* z, index_t ldz, const std::int32_t* labels,
                           const float* sample_weight, index_t rows, index_t classes,
                           float scale, float* grad, index_t ldg, double* row_loss,
                           std::uint8_t* correct) {
  for (index_t i = 0; i < rows; ++i) {
    const float* zi = z + i * ldz;
    float* gi = grad + i * ldg;
    const index_t y = labels[i];
    const float w = sample_weight != nullptr ? sample_weight[i] : 1.0f;
    index_t arg;
    const float m = row_max(zi, classes, &arg);
    const float zy = zi[y];
    // exp(z - max) <= 1: no overflow; the sum is >= 1: the log is finite.
    double sum = 0.0;
    for (index_t j = 0; j < classes; ++j) {
      const float e = std::exp(zi[j] - m);
      gi[j] = e;  // gi may alias zi: zi[j] is not read again after this point...
      sum += e;
    }
    if (row_loss != nullptr) row_loss[i] = w * (std::log(sum) + (double(m) - double(zy)));
    if (correct != nullptr) correct[i] = arg == y;
    // ...except zy and m, saved above.
    const float inv = static_cast<float>(1.0 / sum);
    const float sw = scale * w;
    for (index_t j = 0; j < classes; ++j) gi[j] = sw * (gi[j] * inv);
    gi[y] -= sw;
  }
}

void softmax_rows(const float* z, index_t ldz, index_t rows, index_t classes, bool log,
                  float* out, index_t ldo) {
  for (index_t i = 0; i < rows; ++i) {
    const float* zi = z + i * ldz;
    float* oi = out + i * ldo;
    index_t arg;
    const float m = row_max(zi, classes, &arg);
    double sum = 0.0;
    for (index_t j = 0; j < classes; ++j) sum += std::exp(zi[j] - m);
    if (log) {
      const float lse = static_cast<float>(std::log(sum));
      for (index_t j = 0; j < classes; ++j) oi[j] = (zi[j] - m) - lse;
    } else {
      const float inv = static_cast<float>(1.0 / sum);
      for (index_t j = 0; j < classes; ++j) oi[j] = std::exp(zi[j] - m) * inv;
    }
  }
}

}  // namespace fastmlp
