// The fused RMSNorm and RoPE ops against the composite LibTorch formulas they
// replace (transformers' LlamaRMSNorm and rotate_half), values and gradients,
// on shapes with odd sizes, one row and one position.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "runtime/src/bf16.h"
#include "runtime/src/kernels/quant_dot.h"
#include "runtime/src/norm_rope.h"
#include "runtime/src/swiglu.h"

namespace attune::runtime {
namespace {

at::Tensor CompositeRmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// x [B, T, H, D] -> [B, H, T, D].
at::Tensor CompositeRope(const at::Tensor& x_bthd, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor x = x_bthd.transpose(1, 2);
  const int64_t half = x.size(-1) / 2;
  const at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

void ExpectClose(const at::Tensor& a, const at::Tensor& b, double rel, const char* what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_LE((a - b).abs().max().item<double>(), rel * b.abs().max().item<double>() + 1e-7) << what;
}

TEST(NormRopeTest, RmsNormEqualsTheCompositeFormulaWithGradients) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (const std::vector<int64_t> shape : {std::vector<int64_t>{3, 7, 37}, {1, 1, 576}, {5, 1}}) {
    at::Tensor x = (at::randn(shape, gen) * 3).requires_grad_(true);
    at::Tensor w = at::randn({shape.back()}, gen).requires_grad_(true);
    at::Tensor g = at::randn(shape, gen);
    at::Tensor y = RmsNorm(x, w, 1e-5);
    auto grads = torch::autograd::grad({y}, {x, w}, {g});
    at::Tensor yr = CompositeRmsNorm(x, w, 1e-5);
    auto grads_r = torch::autograd::grad({yr}, {x, w}, {g});
    ExpectClose(y, yr, 1e-5, "y");
    ExpectClose(grads[0], grads_r[0], 1e-4, "dx");
    ExpectClose(grads[1], grads_r[1], 1e-4, "dw");
  }
}

TEST(NormRopeTest, RopeEqualsRotateHalfAndTransposesToHeadsFirst) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12);
  for (const std::vector<int64_t> shape : {std::vector<int64_t>{2, 5, 3, 8}, {1, 1, 9, 64}, {3, 17, 1, 2}}) {
    const int64_t T = shape[1], D = shape[3];
    at::Tensor x = at::randn(shape, gen).requires_grad_(true);
    at::Tensor angle = at::randn({T, D / 2}, gen);
    at::Tensor cos = angle.cos(), sin = angle.sin();
    at::Tensor y = Rope(x, cos, sin);
    EXPECT_TRUE(y.is_contiguous());
    at::Tensor g = at::randn(y.sizes(), gen);
    at::Tensor dx = torch::autograd::grad({y}, {x}, {g})[0];
    at::Tensor yr = CompositeRope(x, cos, sin);
    at::Tensor dxr = torch::autograd::grad({yr}, {x}, {g})[0];
    ExpectClose(y, yr, 1e-6, "y");
    ExpectClose(dx, dxr, 1e-6, "dx");
  }
}

// The fused SwiGLU op against LibTorch's silu(gate) * up, values and both
// gradients, on an odd shape longer than one thread's share and on one
// element (the kernels' own bounds are in kernels_test).
TEST(NormRopeTest, SwiGluMatchesLibTorchsSiluTimesUpWithGradients) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(19);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{3, 7, 1537}, {1}}) {
    at::Tensor gate = (at::randn(shape, gen) * 4).requires_grad_(true), up = at::randn(shape, gen).requires_grad_(true);
    const at::Tensor dy = at::randn(shape, gen);
    at::Tensor y = SwiGlu(gate, up);
    auto got = torch::autograd::grad({y}, {gate, up}, {dy});
    at::Tensor yr = at::silu(gate) * up;
    auto want = torch::autograd::grad({yr}, {gate, up}, {dy});
    ExpectClose(y, yr, 1e-6, "y");
    ExpectClose(got[0], want[0], 1e-6, "dgate");
    ExpectClose(got[1], want[1], 1e-6, "dup");
  }
}

// The differentiable casts round as LibTorch rounds, scale, and pass
// gradients back in the input's dtype, on every instruction set of this CPU
// and the scalar path (the conversion loops dispatch as the kernels do).
TEST(NormRopeTest, CastsRoundAsLibTorchAndCarryGradients) {
  const kernels::Isa previous = kernels::ActiveIsa();
  for (kernels::Isa isa : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512}) {
    if (!kernels::IsaSupported(isa)) continue;
    SCOPED_TRACE(kernels::IsaName(isa));
    kernels::ForceIsa(isa);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
    at::Tensor x = at::randn({4, 33}, gen);
    x[0][0] = std::numeric_limits<float>::quiet_NaN();
    x[0][1] = std::numeric_limits<float>::infinity();
    x[0][2] = 1.0f + 1.0f / 256.0f;  // a tie: rounds to even (1.0)
    at::Tensor b = Bf16Copy(x), br = x.to(at::kBFloat16);
    EXPECT_TRUE(at::isnan(b[0][0]).item<bool>());
    b[0][0] = 0;
    br[0][0] = 0;
    EXPECT_TRUE(at::equal(b, br));
    EXPECT_TRUE(at::equal(Fp32Copy(br, 0.5f), br.to(at::kFloat) * 0.5));
    // More than one thread's share, with a tail no vector width divides.
    at::Tensor big = at::randn({3, 70001}, gen) * 1000;
    EXPECT_TRUE(at::equal(Bf16Copy(big, 0.25f), (big * 0.25).to(at::kBFloat16)));
    at::Tensor big_b = big.to(at::kBFloat16);
    EXPECT_TRUE(at::equal(Fp32Copy(big_b, 3.0f), big_b.to(at::kFloat) * 3.0));
    at::Tensor acc = at::randn({3, 70001}, gen);
    const at::Tensor sum = acc + big_b.to(at::kFloat);
    FromBf16(Bf16Data(big_b), big_b.numel(), acc.data_ptr<float>(),
             /*accumulate=*/true);
    EXPECT_TRUE(at::equal(acc, sum));

    // A mask [R, S] over every R rows, as the attention's causal mask.
    at::Tensor scores = at::randn({2, 3, 4, 5}, gen).to(at::kBFloat16).requires_grad_(true);
    at::Tensor mask = at::randn({4, 5}, gen);
    at::Tensor masked = CastFp32(scores, 0.125, mask);
    EXPECT_TRUE(at::equal(masked, scores.detach().to(at::kFloat) * 0.125 + mask));
    at::Tensor gm = at::randn({2, 3, 4, 5}, gen);
    at::Tensor dscores = torch::autograd::grad({masked}, {scores}, {gm})[0];
    EXPECT_TRUE(at::equal(dscores, (gm * 0.125).to(at::kBFloat16)));

    at::Tensor xs = at::randn({6, 5}, gen).requires_grad_(true);
    at::Tensor y = CastFp32(at::matmul(CastBf16(xs), CastBf16(xs).t()), 0.25);
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    at::Tensor g = torch::autograd::grad({y.sum()}, {xs})[0];
    EXPECT_EQ(g.scalar_type(), at::kFloat);
    at::Tensor gr = torch::autograd::grad({(at::matmul(xs, xs.t()) * 0.25).sum()}, {xs})[0];
    EXPECT_LT((g - gr).abs().max().item<double>(), 0.02 * gr.abs().max().item<double>());
  }
  kernels::ForceIsa(previous);
}

}  // namespace
}  // namespace attune::runtime
