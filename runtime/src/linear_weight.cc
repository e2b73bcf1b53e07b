#include "attune/runtime/linear_weight.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cpuid.h>

#include <algorithm>
#include <vector>

#include "runtime/src/bf16.h"
#include "runtime/src/bf16_gemm.h"
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {
namespace {

// Rows of a dequantized tile. fp32: about 1 MiB, so the tile stays in L2
// while BLAS streams the activations past it. bf16: up to 8 MiB, a whole
// projection of a small model in one product; oneDNN's fast bf16 kernels
// need dense operands, so a product over a whole weight writes (or reads)
// its operand in place, while one over part of it goes through a dense
// scratch.
int64_t TileRows(int64_t cols, bool bf16) {
  const int64_t elements = int64_t(1) << (bf16 ? 22 : 18);
  return std::max<int64_t>(16, elements / std::max<int64_t>(cols, 1));
}

// Dequantizes rows [r0, r0 + n) to bf16 into dst, 16 rows at a time across
// LibTorch's intra-op threads (the ones its bf16 GEMM runs on next).
void DequantizeTileBf16(const QuantMatrix& q, int64_t r0, int64_t n, uint16_t* dst) {
  const int64_t chunk = 16;
  at::parallel_for(0, (n + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t a = c * chunk, rows = std::min(chunk, n - a);
      kernels::DequantizeRowsBf16(q.type, q.data + size_t(r0 + a) * q.row_bytes, q.row_bytes, rows, q.cols,
                                  dst + a * q.cols);
    }
  });
}

// Calls f(r0, n, tile) for each tile of rows [r0, r0 + n) of q, dequantized
// to bf16 (on LibTorch's threads) or to fp32 (on the calling thread: the fp32
// product that follows runs on OpenBLAS's threads, which spin, yielding,
// between products on the other cores; split across the pool's workers, the
// dequantization made them and OpenBLAS's take turns on those cores, and a
// training step on 2 cores took 11-14 % longer, docs/PERFORMANCE.md).
template <typename F>
void ForEachTile(const QuantMatrix& q, bool bf16, F&& f) {
  const int64_t tile = TileRows(q.cols, bf16), cap = std::min(tile, q.rows) * q.cols;
  std::vector<float> f32(size_t(bf16 ? 0 : cap));
  std::vector<uint16_t> b16(size_t(bf16 ? cap : 0));
  for (int64_t r0 = 0; r0 < q.rows; r0 += tile) {
    const int64_t n = std::min(tile, q.rows - r0);
    if (bf16) {
      DequantizeTileBf16(q, r0, n, b16.data());
      f(r0, n, at::from_blob(b16.data(), {n, q.cols}, at::kBFloat16));
    } else {
      kernels::DequantizeRows(q.type, q.data + size_t(r0) * q.row_bytes, q.row_bytes, n, q.cols, f32.data());
      f(r0, n, at::from_blob(f32.data(), {n, q.cols}, at::kFloat));
    }
  }
}

// Autograd for a frozen quantized weight: d(x Wᵀ)/dx · g = g W. Nothing is
// saved but the weight's address (it outlives every graph built on it). The
// bf16 copy of x is passed by address too (0: none), read only in forward
// while the caller holds it.
struct QuantLinearFn : public torch::autograd::Function<QuantLinearFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t weight,
                            int64_t x_bf16) {
    ctx->saved_data["w"] = weight;
    const auto* w = reinterpret_cast<const LinearWeight*>(weight);
    at::NoGradGuard ng;
    ExactProducts exact;  // the product backward differentiates
    return x_bf16 ? w->Mul(x, *reinterpret_cast<const at::Tensor*>(x_bf16)) : w->Mul(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad) {
    const auto* w = reinterpret_cast<const LinearWeight*>(ctx->saved_data["w"].toInt());
    return {w->MulTransposed(grad[0]), at::Tensor(), at::Tensor()};
  }
};

thread_local bool exact_products = false;
thread_local bool bf16_products = false;

}  // namespace

Bf16Products::Bf16Products() : previous_(bf16_products) { bf16_products = true; }
Bf16Products::~Bf16Products() { bf16_products = previous_; }
bool Bf16Products::active() { return bf16_products; }

bool CpuHasBf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = (d >> 22) & 1;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return amx_bf16;
  const bool avx512_bf16 = (a >> 5) & 1;
  return avx512_bf16 || amx_bf16;
}

ExactProducts::ExactProducts() : previous_(exact_products) { exact_products = true; }
ExactProducts::~ExactProducts() { exact_products = previous_; }
bool ExactProducts::active() { return exact_products; }

LinearWeight::LinearWeight(at::Tensor w) : w_(w.contiguous()) {
  q_.type = GgmlType::kF32;
  q_.rows = w_.size(0);
  q_.cols = w_.size(1);
  q_.row_bytes = size_t(q_.cols) * sizeof(float);
  q_.data = reinterpret_cast<const uint8_t*>(w_.data_ptr<float>());
}

LinearWeight::LinearWeight(QuantMatrix q) : q_(std::move(q)) {}

at::Tensor LinearWeight::Mul(const at::Tensor& x, const at::Tensor& x_bf16) const {
  if (!quantized()) return at::linear(x, w_);
  if (x.requires_grad() && at::GradMode::is_enabled()) {
    return QuantLinearFn::apply(x, reinterpret_cast<int64_t>(this),
                                x_bf16.defined() ? reinterpret_cast<int64_t>(&x_bf16) : int64_t(0));
  }
  auto sizes = x.sizes().vec();
  at::Tensor x2 = x.reshape({-1, q_.cols}).to(at::kFloat).contiguous();
  const at::Tensor x2_bf16 = x_bf16.defined() ? x_bf16.reshape({-1, q_.cols}).contiguous() : at::Tensor();
  at::Tensor y = MulNoGrad(x2, ExactProducts::active(), x2_bf16);
  sizes.back() = q_.rows;
  return y.view(sizes);
}

at::Tensor LinearWeight::MulNoGrad(const at::Tensor& x2, bool exact, const at::Tensor& x2_bf16) const {
  const int64_t m = x2.size(0);
  at::Tensor y = at::empty({m, q_.rows}, at::kFloat);
  if (m == 1) {
    runtime::MulVec(q_, x2.data_ptr<float>(), y.data_ptr<float>());
    return y;
  }
  if (!exact && kernels::FastMultiRows(q_.type)) {
    MulRows(q_, x2.data_ptr<float>(), m, y.data_ptr<float>());
    return y;
  }
  // Under Bf16Products each tile's product is computed in fp32 (oneDNN,
  // bf16 operands) into y, or into a scratch copied into its columns.
  const bool bf16 = Bf16Products::active();
  const at::Tensor xin = !bf16 ? x2 : x2_bf16.defined() ? x2_bf16 : Bf16Copy(x2);
  float* yd = y.data_ptr<float>();
  at::Tensor scratch;
  ForEachTile(q_, bf16, [&](int64_t r0, int64_t n, const at::Tensor& wt) {
    if (!bf16) {
      y.narrow(1, r0, n).copy_(at::mm(xin, wt.t()));
      return;
    }
    Bf16GemmShape s;
    s.m = m, s.n = n, s.k = q_.cols, s.lda = q_.cols, s.ldb = q_.cols, s.ldc = n, s.b_transposed = true;
    if (n == q_.rows) return Bf16Gemm(s, Bf16Data(xin), Bf16Data(wt), yd);
    if (!scratch.defined()) scratch = at::empty({m * n}, at::kFloat);
    Bf16Gemm(s, Bf16Data(xin), Bf16Data(wt), scratch.data_ptr<float>());
    y.narrow(1, r0, n).copy_(scratch.narrow(0, 0, m * n).view({m, n}));
  });
  return y;
}

at::Tensor LinearWeight::MulTransposed(const at::Tensor& g, const at::Tensor& g_bf16) const {
  if (!quantized()) return at::matmul(g, w_);
  auto sizes = g.sizes().vec();
  at::Tensor g2 = g.reshape({-1, q_.rows}).to(at::kFloat).contiguous();
  at::NoGradGuard ng;
  sizes.back() = q_.cols;
  // Under Bf16Products each tile's partial sum is added in fp32 (the first
  // one written, so y needs no zero fill); a tile of part of the weight
  // reads a dense copy of its columns of g.
  const bool bf16 = Bf16Products::active();
  const at::Tensor gin = !bf16 ? g2 : g_bf16.defined() ? g_bf16.reshape({-1, q_.rows}).contiguous() : Bf16Copy(g2);
  at::Tensor y = bf16 ? at::empty({g2.size(0), q_.cols}, at::kFloat) : at::zeros({g2.size(0), q_.cols}, at::kFloat);
  ForEachTile(q_, bf16, [&](int64_t r0, int64_t n, const at::Tensor& wt) {
    if (!bf16) {
      y.addmm_(g2.narrow(1, r0, n), wt);
      return;
    }
    const at::Tensor part = n == q_.rows ? gin : gin.narrow(1, r0, n).contiguous();
    Bf16GemmShape s;
    s.m = g2.size(0), s.n = q_.cols, s.k = n, s.lda = n, s.ldb = q_.cols, s.ldc = q_.cols;
    s.accumulate = r0 > 0;
    Bf16Gemm(s, Bf16Data(part), Bf16Data(wt), y.data_ptr<float>());
  });
  return y.view(sizes);
}

void LinearWeight::Row(int64_t id, float* dst) const { RowOf(q_, id, dst); }

at::Tensor LinearWeight::Rows(const at::Tensor& ids) const {
  if (!quantized()) return at::embedding(w_, ids);
  at::Tensor flat = ids.reshape({-1}).to(at::kLong).contiguous();
  const int64_t n = flat.size(0);
  at::Tensor out = at::empty({n, q_.cols}, at::kFloat);
  const int64_t* id = flat.data_ptr<int64_t>();
  float* dst = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) Row(id[i], dst + i * q_.cols);
  auto sizes = ids.sizes().vec();
  sizes.push_back(q_.cols);
  return out.view(sizes);
}

at::Tensor LinearWeight::Dequantized() const {
  if (!quantized()) return w_;
  at::Tensor out = at::empty({q_.rows, q_.cols}, at::kFloat);
  kernels::DequantizeRows(q_.type, q_.data, q_.row_bytes, q_.rows, q_.cols, out.data_ptr<float>());
  return out;
}

}  // namespace attune::runtime
