#include "runtime/src/norm_rope.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace attune::runtime {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per task: enough work per thread's share to outweigh the fork.
int64_t RowGrain(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
    const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
    const int64_t h = x.size(-1), rows = x.numel() / h;
    at::Tensor y = at::empty(x.sizes(), at::kFloat), r = at::empty({rows}, at::kFloat);
    const float* xd = x.data_ptr<float>();
    const float* wd = w.data_ptr<float>();
    float* yd = y.data_ptr<float>();
    float* rd = r.data_ptr<float>();
    at::parallel_for(0, rows, RowGrain(h), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float* xi = xd + i * h;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < h; ++j) ss += xi[j] * xi[j];
        const float ri = 1.0f / std::sqrt(ss / float(h) + float(eps));
        rd[i] = ri;
        float* yi = yd + i * h;
#pragma omp simd
        for (int64_t j = 0; j < h; ++j) yi[j] = xi[j] * ri * wd[j];
      }
    });
    ctx->save_for_backward({x, w, r});
    return y;
  }

  // dx = r (g w - x̂ · mean(g w x̂)), x̂ = x r; dw = Σ_rows g x̂.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &r = saved[2];
    const at::Tensor g = grads[0].to(at::kFloat).contiguous();
    const int64_t h = x.size(-1), rows = x.numel() / h;
    at::Tensor dx = at::empty(x.sizes(), at::kFloat);
    const float* xd = x.data_ptr<float>();
    const float* wd = w.data_ptr<float>();
    const float* rd = r.data_ptr<float>();
    const float* gd = g.data_ptr<float>();
    float* dxd = dx.data_ptr<float>();
    at::parallel_for(0, rows, RowGrain(h), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float *xi = xd + i * h, *gi = gd + i * h;
        const float ri = rd[i];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < h; ++j) dot += gi[j] * wd[j] * xi[j];
        const float c = dot * ri * ri / float(h);
        float* dxi = dxd + i * h;
#pragma omp simd
        for (int64_t j = 0; j < h; ++j) dxi[j] = ri * (gi[j] * wd[j] - xi[j] * c);
      }
    });
    at::Tensor dw;
    if (w.requires_grad()) dw = (g.view({rows, h}) * x.view({rows, h}) * r.view({rows, 1})).sum(0);
    return {dx, dw, at::Tensor()};
  }
};

// One (b, t) row of H heads: out[b, h, t, :] (heads head_stride apart) from
// x[b, t, h, :].
void RotateRow(const float* x, const float* c, const float* s, int64_t heads, int64_t d, int64_t head_stride,
               float* out) {
  const int64_t half = d / 2;
  for (int64_t hh = 0; hh < heads; ++hh) {
    const float *x1 = x + hh * d, *x2 = x1 + half;
    float *o1 = out + hh * head_stride, *o2 = o1 + half;
#pragma omp simd
    for (int64_t j = 0; j < half; ++j) {
      o1[j] = x1[j] * c[j] - x2[j] * s[j];
      o2[j] = x2[j] * c[j] + x1[j] * s[j];
    }
  }
}

struct RopeFn : public torch::autograd::Function<RopeFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& cos, const at::Tensor& sin) {
    const at::Tensor x = x_in.contiguous(), c = cos.contiguous(), s = sin.contiguous();
    const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
    at::Tensor out = at::empty({B, H, T, D}, at::kFloat);
    const float *xd = x.data_ptr<float>(), *cd = c.data_ptr<float>(), *sd = s.data_ptr<float>();
    float* od = out.data_ptr<float>();
    at::parallel_for(0, B * T, RowGrain(H * D), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t bi = i / T, t = i % T;
        RotateRow(xd + i * H * D, cd + t * (D / 2), sd + t * (D / 2), H, D, T * D, od + (bi * H * T + t) * D);
      }
    });
    ctx->save_for_backward({c, s});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &c = saved[0], &s = saved[1];
    const at::Tensor g = grads[0].to(at::kFloat).contiguous();  // [B, H, T, D]
    const int64_t B = g.size(0), H = g.size(1), T = g.size(2), D = g.size(3), half = D / 2;
    at::Tensor dx = at::empty({B, T, H, D}, at::kFloat);
    const float *gd = g.data_ptr<float>(), *cd = c.data_ptr<float>(), *sd = s.data_ptr<float>();
    float* dxd = dx.data_ptr<float>();
    at::parallel_for(0, B * T, RowGrain(H * D), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t bi = i / T, t = i % T;
        const float *ct = cd + t * half, *st = sd + t * half;
        for (int64_t hh = 0; hh < H; ++hh) {
          const float* g1 = gd + ((bi * H + hh) * T + t) * D;
          const float* g2 = g1 + half;
          float* d1 = dxd + (i * H + hh) * D;
          float* d2 = d1 + half;
#pragma omp simd
          for (int64_t j = 0; j < half; ++j) {
            d1[j] = g1[j] * ct[j] + g2[j] * st[j];
            d2[j] = g2[j] * ct[j] - g1[j] * st[j];
          }
        }
      }
    });
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return RmsNormFn::apply(x.to(at::kFloat), w.to(at::kFloat), eps);
}

at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return RopeFn::apply(x.to(at::kFloat), cos, sin);
}

}  // namespace attune::runtime
