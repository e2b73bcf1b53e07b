// bf16 × bf16 → fp32 matrix products through oneDNN's matmul primitive (the
// library LibTorch's own bf16 GEMM runs on), for the products of
// Bf16Products: the result is written or added in fp32 directly, with no
// bf16 rounding of the product and no widening pass after it.
//
// Row-major operands with leading dimensions, as BLAS takes them:
//   C[m, n] (+)= alpha · A[m, k] · op(B),  op(B) = B[k, n] or, with
//   b_transposed, the transpose of B[n, k].
// The product runs on the calling thread's OpenMP threads (LibTorch's
// intra-op threads). On a CPU without AVX-512, where oneDNN 2.x has no bf16,
// the operands are widened to fp32 for LibTorch's GEMM (same result up to
// the order of the sums). Thread safety: any thread may call it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace attune::runtime {

struct Bf16GemmShape {
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  bool b_transposed = false;
  bool accumulate = false;  // C += alpha·A·op(B) instead of C = alpha·A·op(B)
  float alpha = 1.0f;
};

void Bf16Gemm(const Bf16GemmShape& s, const uint16_t* a, const uint16_t* b, float* c);

// The name of the oneDNN implementation that runs shape s, for tests and
// benchmarks: "brg:avx512_core_bf16" (or "brg:avx512_core_amx") for dense
// operands on a CPU with bf16; "gemm:jit" where a leading dimension is wider
// than its matrix (slower); "ref…" its reference code (much slower); or
// that the product is widened to fp32 (no oneDNN bf16 on this CPU).
std::string Bf16GemmImplementation(const Bf16GemmShape& s);

// Whether oneDNN computes bf16 products on this CPU (AVX-512 and later).
// Where it does not, Bf16Gemm widens them to fp32, and LibTorch's own bf16
// at::matmul sums in bf16 (its generic kernel: 2 % off a LoRA's weight
// gradient over 74 tokens, more over a batch), so bf16 products that need
// fp32 sums go through Bf16Matmul.
bool Bf16GemmNative();

// at::matmul(a, b) of bf16 tensors, rounded to bf16 as LibTorch rounds it,
// with fp32 sums on every CPU: at::matmul where oneDNN takes bf16, else the
// operands widened exactly to fp32. Operands of another type: at::matmul.
at::Tensor Bf16Matmul(const at::Tensor& a, const at::Tensor& b);

}  // namespace attune::runtime
