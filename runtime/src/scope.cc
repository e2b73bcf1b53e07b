#include "attune/runtime/scope.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "attune/runtime/generate.h"
#include "attune/runtime/plain_weights.h"

namespace attune::runtime {
namespace {

std::vector<float> Floats(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

Result<at::Tensor> ScopeFeatures(const Model& model, const std::string& text, int64_t layer) {
  const int64_t n = int64_t(model.layers().size());
  if (layer < 1 || layer > n) {
    return InvalidArgumentError("scope layer " + std::to_string(layer) + " is outside [1, " + std::to_string(n) + "]");
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, TextIds(model, text));
  if (ids.empty()) return InvalidArgumentError("scope text '" + text + "' has no tokens");
  TruncateScopeIds(model.config(), &ids);
  std::vector<int64_t> v(ids.begin(), ids.end());
  at::NoGradGuard no_grad;
  const at::Tensor x = HiddenStates(model, nullptr, at::tensor(v, at::kLong).unsqueeze(0), layer)[0].to(at::kFloat);
  return x.size(0) > 1 ? x.slice(0, 1).mean(0) : x[0];
}

Result<adapters::Scope> FitScope(const Model& model, const std::vector<std::string>& in,
                                 const std::vector<std::string>& out, const ScopeFitOptions& options) {
  if (in.empty() || out.empty()) {
    return InvalidArgumentError("a scope needs texts in it and out of it (" + std::to_string(in.size()) + " in, " +
                                std::to_string(out.size()) + " out)");
  }
  const int64_t layer = options.layer > 0 ? options.layer : std::max<int64_t>(1, int64_t(model.layers().size()) / 2);
  auto features = [&](const std::vector<std::string>& texts) -> Result<at::Tensor> {
    std::vector<at::Tensor> rows;
    for (const auto& t : texts) {
      ASSIGN_OR_RETURN(at::Tensor f, ScopeFeatures(model, t, layer));
      rows.push_back(f);
    }
    return at::stack(rows);
  };
  ASSIGN_OR_RETURN(at::Tensor X_in, features(in));
  ASSIGN_OR_RETURN(at::Tensor X_out, features(out));
  const at::Tensor mean = X_out.mean(0);
  const at::Tensor scale = 1.0 / (X_out.std(0, /*unbiased=*/false) + 1e-3);
  const at::Tensor X = at::cat({X_in, X_out}).sub(mean).mul(scale);
  const at::Tensor y = at::cat({at::ones({X_in.size(0)}), at::zeros({X_out.size(0)})});
  // Each side weighs half: a window of few messages against many general ones.
  const at::Tensor sample_weight =
      at::cat({at::full({X_in.size(0)}, 0.5 / X_in.size(0)), at::full({X_out.size(0)}, 0.5 / X_out.size(0))});
  at::Tensor w = at::zeros({X.size(1)}), b = at::zeros({1});
  {
    at::AutoGradMode grad(true);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    for (int step = 0; step < options.steps; ++step) {
      at::Tensor logits = at::matmul(X, w) + b;
      at::Tensor loss = (at::binary_cross_entropy_with_logits(logits, y, {}, {}, at::Reduction::None) * sample_weight)
                            .sum() +
                        options.l2 * w.pow(2).sum();
      loss.backward();
      at::NoGradGuard no_grad;
      w.sub_(w.grad() * options.learning_rate);
      b.sub_(b.grad() * options.learning_rate);
      w.grad().zero_();
      b.grad().zero_();
    }
  }
  at::NoGradGuard no_grad;
  w = w.detach();
  b = b.detach();
  const at::Tensor logits = at::matmul(X, w) + b;
  adapters::Scope s;
  s.layer = layer;
  s.mean = Floats(mean);
  s.scale = Floats(scale);
  s.weight = Floats(w);
  s.bias = b.item<double>();
  s.fitted_in = X_in.size(0);
  s.fitted_out = X_out.size(0);
  s.misplaced = (logits.slice(0, 0, X_in.size(0)) <= 0).sum().item<int64_t>() +
                (logits.slice(0, X_in.size(0)) > 0).sum().item<int64_t>();
  for (float v : s.weight) {
    if (!std::isfinite(v)) return InternalError("the scope's fit diverged (a weight is not finite)");
  }
  return s;
}

Status CheckScopeFits(const Model& model, const adapters::Scope& scope) {
  return CheckScopeFits(scope, model.config().hidden, int64_t(model.layers().size()));
}

Result<double> ScopeScore(const Model& model, const adapters::Scope& scope, const std::string& text) {
  RETURN_IF_ERROR(CheckScopeFits(model, scope));
  if (scope.empty()) return InvalidArgumentError("the scope is empty");
  ASSIGN_OR_RETURN(at::Tensor x, ScopeFeatures(model, text, scope.layer));
  const std::vector<float> f = Floats(x);
  return scope.Logit(f.data());
}

bool InScope(const Model& model, const adapters::Scope& scope, const std::string& text) {
  if (scope.empty()) return true;
  auto score = ScopeScore(model, scope, text);
  return score.ok() && *score > 0;
}

}  // namespace attune::runtime
