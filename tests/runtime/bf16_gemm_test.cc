// The bf16 × bf16 → fp32 products of the bf16 training path (oneDNN's
// matmul) against LibTorch's fp32 matmul of the same bf16 values widened:
// odd shapes, one row and one column, both layouts of B, writing into
// columns of a wider C, and accumulating a scaled product.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attune/runtime/linear_weight.h"
#include "runtime/src/bf16.h"
#include "runtime/src/bf16_gemm.h"
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {
namespace {

TEST(Bf16GemmTest, ProductsEqualFp32MatmulOfTheWidenedValues) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  struct Case { int64_t m, n, k; };
  for (const Case c : {Case{1, 1, 1}, Case{3, 5, 7}, Case{37, 33, 65}, Case{1, 130, 96}, Case{70, 1, 17}}) {
    for (const bool transposed : {false, true}) {
      for (const bool accumulate : {false, true}) {
        const float alpha = accumulate ? 0.375f : 1.0f;
        SCOPED_TRACE(testing::Message() << c.m << "x" << c.n << "x" << c.k << " transposed " << transposed
                                        << " accumulate " << accumulate);
        const at::Tensor a = at::randn({c.m, c.k}, gen).to(at::kBFloat16);
        const at::Tensor b = transposed ? at::randn({c.n, c.k}, gen).to(at::kBFloat16)
                                        : at::randn({c.k, c.n}, gen).to(at::kBFloat16);
        // C is [m, n + 5]; the product goes into columns [2, 2 + n).
        const at::Tensor before = at::randn({c.m, c.n + 5}, gen);
        at::Tensor out = before.clone();
        Bf16GemmShape s;
        s.m = c.m, s.n = c.n, s.k = c.k, s.lda = c.k, s.ldb = transposed ? c.k : c.n, s.ldc = c.n + 5;
        s.b_transposed = transposed, s.accumulate = accumulate, s.alpha = alpha;
        Bf16Gemm(s, Bf16Data(a), Bf16Data(b), out.data_ptr<float>() + 2);

        const at::Tensor bk = transposed ? b.to(at::kFloat).t() : b.to(at::kFloat);
        at::Tensor want = at::mm(a.to(at::kFloat), bk) * alpha;
        if (accumulate) want += before.narrow(1, 2, c.n);
        const at::Tensor got = out.narrow(1, 2, c.n);
        // Only the summation order differs: fp32 rounding over k terms.
        EXPECT_LE((got - want).abs().max().item<double>(), 1e-5 * (1 + want.abs().max().item<double>()));
        EXPECT_TRUE(out.narrow(1, 0, 2).equal(before.narrow(1, 0, 2)));
        EXPECT_TRUE(out.narrow(1, c.n + 2, 3).equal(before.narrow(1, c.n + 2, 3)));
      }
    }
  }
}

// Where the CPU multiplies bf16 in hardware, oneDNN runs the shapes the
// products use with its brgemm kernels: not its reference code (correct and
// many times slower), nor the gemm:jit path it takes for operands with a
// leading dimension wider than the matrix (6 % slower training steps).
// The weight tiles of the bf16 products are dequantized straight to bf16:
// rounded as LibTorch rounds a float to bf16 (nearest even, NaN a NaN),
// ties, infinities, the largest finite float, signed zeros and subnormals
// included, on every instruction set this CPU has.
TEST(Bf16GemmTest, Bf16DequantizationRoundsAsLibTorch) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.5f, std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::min() / 3};
  for (const uint32_t bits : {0x3F808000u, 0x3F818000u, 0xBF808000u, 0x3F80FFFFu, 0x7F7F8000u, 0x00008000u}) {
    float f;
    std::memcpy(&f, &bits, 4);
    v.push_back(f);  // exact ties to even (down and up), just below a tie, a tie overflowing to infinity
  }
  const at::Tensor random = at::randn({61}, at::make_generator<at::CPUGeneratorImpl>(3)) * 100;
  v.insert(v.end(), random.data_ptr<float>(), random.data_ptr<float>() + random.numel());
  const at::Tensor want = at::from_blob(v.data(), {int64_t(v.size())}, at::kFloat).to(at::kBFloat16);
  const auto* want_bits = reinterpret_cast<const uint16_t*>(want.data_ptr<at::BFloat16>());
  for (const auto isa : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512}) {
    if (!kernels::IsaSupported(isa)) continue;
    const kernels::Isa saved = kernels::ActiveIsa();
    kernels::ForceIsa(isa);
    std::vector<uint16_t> got(v.size());
    kernels::DequantizeRowsBf16(GgmlType::kF32, reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4, 1,
                                int64_t(v.size()), got.data());
    kernels::ForceIsa(saved);
    for (size_t i = 0; i < v.size(); ++i) {
      if (std::isnan(v[i])) {  // LibTorch's own scalar and vector conversions give different NaNs
        EXPECT_TRUE((got[i] & 0x7F80) == 0x7F80 && (got[i] & 0x7F) != 0) << got[i] << " is no NaN";
        continue;
      }
      EXPECT_EQ(got[i], want_bits[i]) << "value " << i << " (" << v[i] << ") on " << kernels::IsaName(isa);
    }
  }
}

TEST(Bf16GemmTest, HardwareBf16RunsTheBrgemmKernels) {
  // The dense shapes the products use: a SmolLM2 projection whole (x Wᵀ)
  // and g W accumulating.
  Bf16GemmShape forward;
  forward.m = 1024, forward.n = 1536, forward.k = 576, forward.lda = 576, forward.ldb = 576, forward.ldc = 1536;
  forward.b_transposed = true;
  Bf16GemmShape backward;
  backward.m = 1024, backward.n = 576, backward.k = 1536, backward.lda = 1536, backward.ldb = 576,
  backward.ldc = 576, backward.accumulate = true;
  for (const auto& s : {forward, backward}) {
    const std::string impl = Bf16GemmImplementation(s);
    RecordProperty("implementation", impl);
    EXPECT_FALSE(impl.empty());
    if (CpuHasBf16()) EXPECT_EQ(impl.rfind("brg", 0), 0u) << impl;
  }
}

}  // namespace
}  // namespace attune::runtime
