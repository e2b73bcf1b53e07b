// A frozen base weight W [out, in] and the only things model code does with
// it: y = x Wᵀ (forward), g W (the input gradient backward needs for a frozen
// weight) and, for embeddings, gathering rows.
//
// Two implementations behind one type (DESIGN.md "Model"):
//  - fp32: a dense float tensor (dequantized at load, or a merged adapter);
//  - quantized: the GGUF blocks as the file holds them (Q4_0 … Q6_K, F16,
//    BF16), memory-mapped where the bytes can be used in place. One-row
//    products quantize the activation to 8 bits and use integer dot products
//    (kernels/quant_dot.h); many-row products dequantize a cache-sized tile of
//    rows at a time and hand it to BLAS.
// Mul is differentiable in x in both implementations (the quantized one
// through MulTransposed), so the trainer's frozen base is this same object.
//
// Thread safety: immutable; all methods may run concurrently.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "attune/runtime/ggml_types.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/quant_matrix.h"

namespace attune::runtime {

// While an ExactProducts object lives on a thread, quantized products of
// many rows on that thread dequantize tiles of the weight for an fp32 GEMM
// (exact with respect to the dequantized weight). Without one, weights of
// the types with a many-row integer kernel (Q4_0, Q4_1, Q8_0 on AVX2 and
// AVX-512) quantize each activation row to 8 bits and use the integer dot
// kernels, as one-row products always do (llama.cpp's method; about 2^-8
// relative error per product; the weight is read in its blocks, with no
// dequantized copy); other types keep the fp32 GEMM. The trainer holds one for a whole run, so that its no-grad passes
// (the frozen base's reference, the checkpointed first pass) compute the
// products its backward pass differentiates; autograd products are always
// exact. Scopes nest.
class ExactProducts {
 public:
  ExactProducts();
  ~ExactProducts();
  ExactProducts(const ExactProducts&) = delete;
  ExactProducts& operator=(const ExactProducts&) = delete;
  static bool active();

 private:
  bool previous_;
};

// While a Bf16Products object lives on a thread, the products that
// dequantize tiles for a GEMM on that thread (many rows under ExactProducts,
// and MulTransposed) round the tile and the activations to bf16 and run
// oneDNN's bf16 GEMM (the library LibTorch's own bf16 GEMM calls;
// AVX512-BF16 or AMX where the CPU has them), accumulating and writing the
// product in fp32: what torch.autocast("cpu", dtype=torch.bfloat16) does to
// a linear layer, without its final rounding of the product to bf16
// (relative error about 2^-8 per product, from the operands). The tile is
// dequantized to bf16, and it and the GEMM run on LibTorch's intra-op
// threads. The
// forward pass also runs the attention products (q kᵀ, p v) and the LoRA
// products in bf16 in such a scope, as autocast does; norms, softmax, the
// LoRA tensors themselves and their optimizer stay fp32. For the trainer's
// frozen base (TrainerOptions::base_products). Scopes nest.
class Bf16Products {
 public:
  Bf16Products();
  ~Bf16Products();
  Bf16Products(const Bf16Products&) = delete;
  Bf16Products& operator=(const Bf16Products&) = delete;
  static bool active();

 private:
  bool previous_;
};

// True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16);
// elsewhere a bf16 GEMM is emulated and slower than fp32.
bool CpuHasBf16();

class LinearWeight {
 public:
  LinearWeight() = default;
  // fp32 implementation. REQUIRES: w is a 2-D float tensor.
  explicit LinearWeight(at::Tensor w);
  // Quantized implementation. REQUIRES: q.cols is a multiple of the type's
  // block size (the loader checks) and q.data holds rows * row_bytes bytes.
  explicit LinearWeight(QuantMatrix q);

  // x [..., in] -> [..., out]. Without autograd, quantized and several rows:
  // 8-bit activations unless ExactProducts is active (see above). x_bf16,
  // when defined, is x rounded to bf16 (Bf16Copy, any shape of x's
  // elements): under Bf16Products the product uses it rather than rounding
  // x again, so that weights sharing one input (q, k, v; gate, up) round it
  // once.
  at::Tensor Mul(const at::Tensor& x, const at::Tensor& x_bf16 = {}) const;
  // g [..., out] -> [..., in]. g_bf16, when defined, is g rounded to bf16
  // (Bf16Copy), used under Bf16Products as x_bf16 is in Mul.
  at::Tensor MulTransposed(const at::Tensor& g, const at::Tensor& g_bf16 = {}) const;
  // Rows `ids` of W as fp32: ids int64 [...] -> [..., in] (embeddings).
  at::Tensor Rows(const at::Tensor& ids) const;
  // One row into dst[in].
  void Row(int64_t id, float* dst) const;
  // The whole matrix as fp32 (a copy for the quantized implementation).
  at::Tensor Dequantized() const;

  bool defined() const { return q_.data != nullptr; }
  bool quantized() const { return !w_.defined(); }
  GgmlType type() const { return q_.type; }
  int64_t out_features() const { return q_.rows; }
  int64_t in_features() const { return q_.cols; }
  int64_t numel() const { return q_.rows * q_.cols; }
  // Bytes of weight data this object refers to.
  size_t bytes() const { return q_.row_bytes * size_t(q_.rows); }
  // The fp32 tensor. REQUIRES: !quantized().
  const at::Tensor& tensor() const { return w_; }
  const QuantMatrix& blocks() const { return q_; }

 private:
  at::Tensor MulNoGrad(const at::Tensor& x2d, bool exact, const at::Tensor& x2d_bf16) const;
  at::Tensor w_;    // fp32 implementation only
  QuantMatrix q_;   // both (for fp32, a view of w_)
};

}  // namespace attune::runtime
