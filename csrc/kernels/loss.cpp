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
                           float scale, float smoothing, float* grad, index_t ldg,
                           double* row_loss, std::uint8_t* correct) {
  const float off = smoothing / static_cast<float>(classes);  // the target's eps / C
  const float on = 1.0f - smoothing;                          // and its 1 - eps
  for (index_t i = 0; i < rows; ++i) {
    const float* zi = z + i * ldz;
    float* gi = grad + i * ldg;
    const index_t y = labels[i];
    const float w = sample_weight != nullptr ? sample_weight[i] : 1.0f;
    index_t arg;
    const float m = row_max(zi, classes, &arg);
    const float zy = zi[y];
    // exp(z - max) <= 1: no overflow; the sum is >= 1: the log is finite.
    double sum = 0.0, zsum = 0.0;
    for (index_t j = 0; j < classes; ++j) {
      const float e = std::exp(zi[j] - m);
      if (smoothing != 0.0f) zsum += zi[j];
      gi[j] = e;  // gi may alias zi: zi[j] is not read again after this point...
      sum += e;
    }
    // ...except zy and m, saved above.
    double target = zy;  // sum_j q_j z_j for the target distribution q
    if (smoothing != 0.0f) target = double(on) * double(zy) + double(off) * zsum;
    if (row_loss != nullptr) row_loss[i] = w * (std::log(sum) + (double(m) - target));
    if (correct != nullptr) correct[i] = arg == y;
    const float inv = static_cast<float>(1.0 / sum);
    const float sw = scale * w;
    if (smoothing == 0.0f) {
      for (index_t j = 0; j < classes; ++j) gi[j] = sw * (gi[j] * inv);
      gi[y] -= sw;
    } else {
      for (index_t j = 0; j < classes; ++j) gi[j] = sw * (gi[j] * inv) - sw * off;
      gi[y] -= sw * on;
    }
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
