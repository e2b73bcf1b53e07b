#include "attune/runtime/logit_rows.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "runtime/src/kernels/activations.h"

namespace attune::runtime {

at::Tensor LogSoftmaxAtTargets(at::Tensor& logits, const at::Tensor& targets, bool grad) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.is_contiguous(),
              "LogSoftmaxAtTargets: logits must be a contiguous fp32 [N, V] tensor");
  const int64_t n = logits.size(0), v = logits.size(1);
  const at::Tensor t = targets.to(at::kLong).contiguous();
  TORCH_CHECK(t.numel() == n, "LogSoftmaxAtTargets: one target per row");
  const int64_t* td = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(td[i] >= 0 && td[i] < v, "LogSoftmaxAtTargets: target out of range");
  at::Tensor out = at::empty({n}, at::kFloat);
  float* x = logits.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = kernels::LogSoftmaxAt(x + i * v, v, td[i], grad);
  });
  return out;
}

at::Tensor KlFromBaseRows(at::Tensor& logits, const at::Tensor& base_lp, bool grad) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.is_contiguous(),
              "KlFromBaseRows: logits must be a contiguous fp32 [N, V] tensor");
  TORCH_CHECK(base_lp.sizes() == logits.sizes(), "KlFromBaseRows: base log-probabilities must match the logits");
  const int64_t n = logits.size(0), v = logits.size(1);
  const at::Tensor b = base_lp.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({n}, at::kFloat);
  float* x = logits.data_ptr<float>();
  const float* bd = b.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) o[i] = kernels::KlFromBase(x + i * v, bd + i * v, v, grad);
  });
  return out;
}

}  // namespace attune::runtime
