#include "runtime/src/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "runtime/src/bf16.h"
#include "runtime/src/kernels/activations.h"

namespace attune::runtime {
namespace {

// Elements per thread's share below which a pass stays on one thread.
constexpr int64_t kGrain = int64_t(1) << 14;

struct SwiGluFn : public torch::autograd::Function<SwiGluFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    const at::Tensor g = gate.contiguous(), u = up.contiguous();
    at::Tensor y = at::empty(g.sizes(), at::kFloat);
    const float *gd = g.data_ptr<float>(), *ud = u.data_ptr<float>();
    float* yd = y.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain,
                     [&](int64_t b, int64_t e) { kernels::SwiGlu(gd + b, ud + b, e - b, yd + b); });
    ctx->save_for_backward({g, u});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &g = saved[0], &u = saved[1];
    const at::Tensor dy = grads[0].to(at::kFloat).contiguous();
    at::Tensor dg = at::empty(g.sizes(), at::kFloat), du = at::empty(g.sizes(), at::kFloat);
    const float *gd = g.data_ptr<float>(), *ud = u.data_ptr<float>(), *dyd = dy.data_ptr<float>();
    float *dgd = dg.data_ptr<float>(), *dud = du.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t b, int64_t e) {
      kernels::SwiGluBackward(gd + b, ud + b, dyd + b, e - b, dgd + b, dud + b);
    });
    return {dg, du};
  }
};

// The values come from the bf16 inputs; the gradients go to gate and up.
struct SwiGluKeptFn : public torch::autograd::Function<SwiGluKeptFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up,
                            const at::Tensor& gate_bf16, const at::Tensor& up_bf16) {
    at::Tensor y = SwiGluOfBf16(gate_bf16, up_bf16);
    ctx->saved_data["g"] = gate_bf16;
    ctx->saved_data["u"] = up_bf16;
    return y.view(gate.sizes());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor g = ctx->saved_data["g"].toTensor(), u = ctx->saved_data["u"].toTensor();
    const at::Tensor dy = grads[0].to(at::kFloat).contiguous();
    at::Tensor dg = at::empty(dy.sizes(), at::kFloat), du = at::empty(dy.sizes(), at::kFloat);
    const uint16_t *gd = Bf16Data(g), *ud = Bf16Data(u);
    const float* dyd = dy.data_ptr<float>();
    float *dgd = dg.data_ptr<float>(), *dud = du.data_ptr<float>();
    at::parallel_for(0, dy.numel(), kGrain, [&](int64_t b, int64_t e) {
      kernels::SwiGluBf16Backward(gd + b, ud + b, dyd + b, e - b, dgd + b, dud + b);
    });
    return {dg, du, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor SwiGluOfBf16(const at::Tensor& gate_bf16, const at::Tensor& up_bf16) {
  TORCH_CHECK(gate_bf16.scalar_type() == at::kBFloat16 && up_bf16.scalar_type() == at::kBFloat16 &&
                  gate_bf16.sizes() == up_bf16.sizes() && gate_bf16.is_contiguous() && up_bf16.is_contiguous(),
              "SwiGluOfBf16: gate and up must be contiguous bf16 tensors of one shape");
  at::Tensor y = at::empty(gate_bf16.sizes(), at::kFloat);
  const uint16_t *gd = Bf16Data(gate_bf16), *ud = Bf16Data(up_bf16);
  float* yd = y.data_ptr<float>();
  at::parallel_for(0, y.numel(), kGrain,
                   [&](int64_t b, int64_t e) { kernels::SwiGluBf16(gd + b, ud + b, e - b, yd + b); });
  return y;
}

at::Tensor SwiGluOfKept(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& gate_bf16,
                        const at::Tensor& up_bf16) {
  TORCH_CHECK(gate.numel() == gate_bf16.numel() && up.numel() == up_bf16.numel() && gate.sizes() == up.sizes(),
              "SwiGluOfKept: the kept values must match gate and up");
  return SwiGluKeptFn::apply(gate, up, gate_bf16, up_bf16);
}

at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.scalar_type() == at::kFloat && up.scalar_type() == at::kFloat && gate.sizes() == up.sizes(),
              "SwiGlu: gate and up must be fp32 tensors of one shape");
  return SwiGluFn::apply(gate, up);
}

}  // namespace attune::runtime
