#include "attune/trainer/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

namespace attune::trainer {

AdamW::AdamW(std::vector<at::Tensor> params, const AdamWOptions& options) : params_(std::move(params)), o_(options) {
  for (const auto& p : params_) {
    m_.push_back(at::zeros_like(p).detach());
    v_.push_back(at::zeros_like(p).detach());
  }
}

void AdamW::Step(double lr) {
  at::NoGradGuard ng;
  ++step_;
  const double bc1 = 1.0 - std::pow(o_.beta1, double(step_));
  const double bc2 = 1.0 - std::pow(o_.beta2, double(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    p.mul_(1.0 - lr * o_.weight_decay);
    m_[i].lerp_(g, 1.0 - o_.beta1);
    v_[i].mul_(o_.beta2).addcmul_(g, g, 1.0 - o_.beta2);
    at::Tensor denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(o_.eps);
    p.addcdiv_(m_[i], denom, -lr / bc1);
  }
}

void AdamW::ZeroGrad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

}  // namespace attune::trainer
