// GGML tensor element types and their dequantization to float32.
//
// Block layouts follow ggml (ggml-common.h / ggml-quants.c, quantization
// version 2). Dequantization reproduces ggml's reference C code operation by
// operation, so the results are bit-identical to ggml and to the `gguf`
// Python package (checked against fixtures in tests/runtime).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace attune::runtime {

// Values are ggml's `enum ggml_type`; they appear in GGUF files.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;  // "Q4_K"
  size_t block_elems;     // elements per block (1 for float types)
  size_t block_bytes;     // bytes per block
};

// Traits of a type this runtime can read; nullopt for any other value
// (including valid ggml types that are not supported, e.g. IQ2_XS).
std::optional<GgmlTypeTraits> GetGgmlTypeTraits(uint32_t type);

// Bytes used by `n` elements of `type`. REQUIRES: supported type and `n` a
// multiple of its block size.
size_t GgmlRowBytes(GgmlType type, size_t n);

// Dequantizes `n` elements (a multiple of the block size) from `src` into
// `dst`. REQUIRES: supported type; `src` holds GgmlRowBytes(type, n) bytes.
void DequantizeRow(GgmlType type, const void* src, float* dst, size_t n);

// IEEE half / bfloat16 conversions (exact).
float HalfToFloat(uint16_t h);
float BFloat16ToFloat(uint16_t h);

}  // namespace attune::runtime
