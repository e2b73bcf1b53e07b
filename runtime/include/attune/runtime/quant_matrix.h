// A frozen weight matrix W [rows, cols] as GGUF blocks over plain memory,
// and the products the LibTorch-free paths need of it (decode, the lean
// forward pass): y = W x for one or several activation rows, and gathering
// one row. No LibTorch types; LinearWeight (linear_weight.h) wraps a
// QuantMatrix and adds the tensor-level products.
//
// Thread safety: the functions are reentrant; they split work across the
// runtime's thread pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "attune/runtime/ggml_types.h"

namespace attune::runtime {

// GGUF blocks of a [rows, cols] matrix; `owner` keeps the bytes alive (the
// file mapping or a buffer of our own). An fp32 matrix is type kF32.
struct QuantMatrix {
  GgmlType type = GgmlType::kF32;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  std::shared_ptr<const void> owner;
};

// y[rows] = W x[cols]: the activation quantized once to 8 bits per block,
// integer dot products per weight row (kernels/quant_dot.h).
void MulVec(const QuantMatrix& w, const float* x, float* y);
// ys[i] = ws[i] x for `n` weights of the same input size in one pool job:
// the activation is quantized once per weight type and the rows of all of
// them are split across the threads together. Each ys[i] is what MulVec
// would write, to the bit.
void MulVecs(const QuantMatrix* const* ws, float* const* ys, int n, const float* x);
// y[m, rows] = x[m, cols] Wᵀ with 8-bit activations: each pool chunk of
// weight rows is dotted with every activation row while it is in cache.
// Row i of y equals MulVec of row i of x, to the bit.
void MulRows(const QuantMatrix& w, const float* x, int64_t m, float* y);
// Row `id` of W as fp32 into dst[cols].
void RowOf(const QuantMatrix& w, int64_t id, float* dst);

}  // namespace attune::runtime
