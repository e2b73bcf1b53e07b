// The bf16 products on a CPU without AVX-512, where oneDNN 2.x has no bf16:
// this process limits oneDNN to AVX2 before its first product, so the
// products must come from the widened fp32 fallback, and still equal
// LibTorch's fp32 matmul of the same bf16 values.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "runtime/src/bf16.h"
#include "runtime/src/bf16_gemm.h"

namespace attune::runtime {
namespace {

TEST(Bf16GemmIsaTest, WithoutAvx512TheProductsAreWidenedAndRight) {
  ASSERT_EQ(dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2), dnnl::status::success);
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

}  // namespace
}  // namespace attune::runtime
