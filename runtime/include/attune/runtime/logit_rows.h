// Per-row reductions of the output head's logits for the training losses,
// in place over a chunk of rows: one read of a row for its log-sum-exp and
// one pass that writes its derivative, where LibTorch's logsumexp,
// subtraction, exp, negation and scatter took seven to nine passes over a
// [rows, vocab] chunk (tens of MiB). Rows split across LibTorch's intra-op
// threads; the exponential is the runtime's vectorized one.
#pragma once

#include <ATen/core/Tensor.h>

namespace attune::runtime {

// logits [N, V] fp32 contiguous, targets [N] int64. Returns log
// softmax(logits)[i, targets[i]] per row ([N]). With grad, each row of
// logits is overwritten with its value's derivative: onehot(target) -
// softmax. REQUIRES: 0 <= targets < V.
at::Tensor LogSoftmaxAtTargets(at::Tensor& logits, const at::Tensor& targets, bool grad);

// logits and base_lp [N, V] fp32 (base log-probabilities). Returns
// KL(base || softmax(logits)) per row ([N]). With grad, each row of logits
// is overwritten with its value's derivative: softmax - exp(base).
at::Tensor KlFromBaseRows(at::Tensor& logits, const at::Tensor& base_lp, bool grad);

}  // namespace attune::runtime
