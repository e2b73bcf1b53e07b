// Quantized matrix-vector kernels over GGUF blocks, with run-time dispatch.
//
// A weight row stays in its GGUF block layout (ggml-common.h). For one
// activation row x, y[r] = dot(W[r], x) is computed the way ggml does on the
// CPU: x is quantized once per call to 8 bits per block (BlockQ8 for the
// 32-element legacy quants, BlockQ8K for the 256-element K-quants) and every
// weight row is dotted with it in integer arithmetic. The 8-bit activation
// costs a relative error of about 2^-8 per block; tests state the bound.
// F32/F16/BF16 weights are dotted with x in float.
//
// Three implementations: portable scalar C++, AVX2+FMA+F16C, and AVX-512
// (VNNI dot products on 256-bit lanes). The best one the CPU supports is
// chosen at first use; ATTUNE_KERNELS=scalar|avx2|avx512 (or ForceIsa in
// tests) overrides it.
//
// Thread safety: all functions are reentrant; ForceIsa is for tests only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "attune/runtime/ggml_types.h"

namespace attune::runtime::kernels {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
const char* IsaName(Isa isa);
// The implementation in use.
Isa ActiveIsa();
// Whether this CPU (and build) can run `isa`.
bool IsaSupported(Isa isa);
// Switches the implementation (tests, benchmarks). REQUIRES: IsaSupported.
void ForceIsa(Isa isa);

constexpr int kQ8Block = 32;
constexpr int kQ8KBlock = 256;

// 8-bit activation block for the legacy quants: x ≈ d * qs, s = d * Σ qs
// (both hold half-precision values, as ggml's block_q8_0/q8_1 do).
struct BlockQ8 {
  float d;
  float s;
  int8_t qs[kQ8Block];
};
// 8-bit activation block for the K-quants; bsums are sums of 16 qs each.
struct BlockQ8K {
  float d;
  int8_t qs[kQ8KBlock];
  int16_t bsums[kQ8KBlock / 16];
};

// Whether `type` is a weight type these kernels handle.
bool Supported(GgmlType type);
// Elements per block of `type` (1 for float types).
int64_t BlockElems(GgmlType type);
// Bytes QuantizeActivation writes for a row of `n` elements against `type`.
size_t ActivationBytes(GgmlType type, int64_t n);
// Prepares x [n] for dot products with rows of `type`.
// REQUIRES: n a multiple of BlockElems(type); out holds ActivationBytes.
void QuantizeActivation(GgmlType type, const float* x, void* out, int64_t n);
// y[r] = dot(row r, x) for `rows` rows of `n` elements starting at `w`,
// rows `row_bytes` apart; `xq` from QuantizeActivation.
void DotRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const void* xq, int64_t n, float* y);
// The same for m activation rows (xq_stride bytes apart, each from
// QuantizeActivation): y[i * y_stride + r] = row r · activation i. Each
// value equals DotRows' to the bit; the SIMD paths unpack a weight block once
// for several activation rows (prefill and evaluation products).
// Whether DotRowsMulti has a kernel of its own for `type` on the active
// instruction set (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K on AVX2/AVX-512), rather than DotRows per
// activation row: only then does it beat dequantizing for an fp32 GEMM.
bool FastMultiRows(GgmlType type);
void DotRowsMulti(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const uint8_t* xq, size_t xq_stride,
                  int64_t m, int64_t n, float* y, int64_t y_stride);
// Dequantizes `rows` rows of `n` elements into dst (row-major, n floats a row).
void DequantizeRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, float* dst);
// The same rounded to bf16 (to nearest even; NaN -> 0x7FC0, as LibTorch
// rounds), in one pass: each value equals DequantizeRows' rounded, to the
// bit. What a bf16 GEMM over a quantized weight reads.
void DequantizeRowsBf16(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, uint16_t* dst);

// The per-ISA function table (internal; exposed for the implementations).
struct KernelTable {
  void (*quantize)(GgmlType type, const float* x, void* out, int64_t n);
  void (*dot_rows)(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const void* xq, int64_t n, float* y);
  void (*dot_rows_multi)(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const uint8_t* xq,
                         size_t xq_stride, int64_t m, int64_t n, float* y, int64_t y_stride);
  void (*dequantize_rows)(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, float* dst);
  void (*dequantize_rows_bf16)(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n,
                               uint16_t* dst);
};
const KernelTable& ScalarKernels();
const KernelTable* Avx2Kernels();    // nullptr when not built
const KernelTable* Avx512Kernels();  // nullptr when not built

}  // namespace attune::runtime::kernels
