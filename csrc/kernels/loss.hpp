// fastmlp/csrc/kernels/loss.hpp — fused softmax cross-entropy, and softmax for inference.
//
// Legend: R rows (samples), C classes. z is (R, C) logits with leading dimension ldz.
// Single-threaded over the given rows: callers split rows among threads.
//
// For each row i, with p = softmax(z_i) computed stably (max shift, log-sum-exp), and the
// target q = (1 - eps) onehot(y_i) + eps / C (label smoothing eps; 0: the one-hot):
//   loss_i = logsumexp(z_i) - sum_j q_j z_ij              (double)
//   grad_i = scale * w_i * (p - q)                        (float, written to grad)
// With eps == 0 the loss is logsumexp(z_i) - z_i[y_i] and the operations are exactly
// those of the plain cross-entropy.
// where w_i = sample_weight[i] (1 when sample_weight is null). grad may alias z (the
// training loop overwrites the logits in place). Logits as large as ±1e4 give finite
// loss and gradient. Outputs, when non-null:
//   row_loss[i] = w_i * loss_i,   correct[i] = (first argmax of z_i == y_i).
// Labels must lie in [0, C): the caller checks.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace fastmlp {

void softmax_cross_entropy(const float* z, index_t ldz, const std::int32_t* labels,
                           const float* sample_weight, index_t rows, index_t classes,
                           float scale, float smoothing, float* grad, index_t ldg,
                           double* row_loss, std::uint8_t* correct);

// out_i = softmax(z_i), or log_softmax(z_i) when log is true. out may alias z.
void softmax_rows(const float* z, index_t ldz, index_t rows, index_t classes, bool log,
                  float* out, index_t ldo);

}  // namespace fastmlp
