// The bf16 products on a CPU without AVX-512, where oneDNN 2.x has no bf16:
// this process limits oneDNN to AVX2 before its first product, so the
// products must come from the widened fp32 fallback, and still equal
// LibTorch's fp32 matmul of the same bf16 values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cmath>
#include <vector>

#include "runtime/src/bf16.h"
#include "runtime/src/bf16_gemm.h"

namespace attune::runtime {
namespace {

// oneDNN's ISA may be limited once, before this process's first product.
void LimitOneDnnToAvx2() {
  static const dnnl::status limited = dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2);
  ASSERT_EQ(limited, dnnl::status::success);
}

TEST(Bf16GemmIsaTest, WithoutAvx512TheProductsAreWidenedAndRight) {
  LimitOneDnnToAvx2();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  for (const bool transposed : {false, true}) {
    for (const bool accumulate : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "transposed " << transposed << " accumulate " << accumulate);
      const int64_t m = 19, n = 23, k = 41;
      const at::Tensor a = at::randn({m, k}, gen).to(at::kBFloat16);
      const at::Tensor b = transposed ? at::randn({n, k}, gen).to(at::kBFloat16) : at::randn({k, n}, gen).to(at::kBFloat16);
      const at::Tensor before = at::randn({m, n + 3}, gen);
      at::Tensor out = before.clone();
      Bf16GemmShape s;
      s.m = m, s.n = n, s.k = k, s.lda = k, s.ldb = transposed ? k : n, s.ldc = n + 3;
      s.b_transposed = transposed, s.accumulate = accumulate, s.alpha = accumulate ? 0.5f : 1.0f;
      EXPECT_EQ(Bf16GemmImplementation(s).rfind("widened", 0), 0u) << Bf16GemmImplementation(s);
      Bf16Gemm(s, Bf16Data(a), Bf16Data(b), out.data_ptr<float>() + 1);
      at::Tensor want = at::mm(a.to(at::kFloat), transposed ? b.to(at::kFloat).t() : b.to(at::kFloat)) * s.alpha;
      if (accumulate) want += before.narrow(1, 1, n);
      EXPECT_LE((out.narrow(1, 1, n) - want).abs().max().item<double>(), 1e-5 * (1 + want.abs().max().item<double>()));
      EXPECT_TRUE(out.narrow(1, 0, 1).equal(before.narrow(1, 0, 1)));
      EXPECT_TRUE(out.narrow(1, n + 1, 2).equal(before.narrow(1, n + 1, 2)));
    }
  }
}

// LibTorch's generic bf16 at::matmul (what an AVX2-only CPU runs) summed in
// bf16: a LoRA's weight gradients came out 2 % off over 74 tokens. Without
// oneDNN's bf16, Bf16Matmul sums in fp32 and rounds only the result, on 2-d
// and batched operands; its result is within bf16 rounding of the exact one
// over a sum of 2048 terms.
TEST(Bf16GemmIsaTest, WithoutAvx512Bf16MatmulSumsInFp32) {
  LimitOneDnnToAvx2();
  EXPECT_FALSE(Bf16GemmNative());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  for (const std::vector<int64_t>& lead : {std::vector<int64_t>{}, std::vector<int64_t>{3, 2}}) {
    std::vector<int64_t> sa = lead, sb = lead;
    sa.insert(sa.end(), {16, 2048});
    sb.insert(sb.end(), {2048, 8});
    // Positive terms: the sum grows, so every bf16 partial sum would lose its low bits.
    const at::Tensor a = at::rand(sa, gen).to(at::kBFloat16), b = at::rand(sb, gen).to(at::kBFloat16);
    const at::Tensor got = Bf16Matmul(a, b);
    ASSERT_EQ(got.scalar_type(), at::kBFloat16);
    const at::Tensor exact = at::matmul(a.to(at::kDouble), b.to(at::kDouble));
    EXPECT_TRUE(got.equal(at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16)));
    EXPECT_LE(((got.to(at::kDouble) - exact).abs() / exact.abs()).max().item<double>(), std::ldexp(1.0, -8));
  }
  // Operands of another type: at::matmul as it is.
  const at::Tensor x = at::randn({4, 5}, gen), y = at::randn({5, 3}, gen);
  EXPECT_TRUE(Bf16Matmul(x, y).equal(at::matmul(x, y)));
}

}  // namespace
}  // namespace attune::runtime
