#include "attune/runtime/ggml_types.h"

#include <cstring>

#include "runtime/src/kernels/quant_blocks.h"

namespace attune::runtime {

// The block code lives with the kernels (kernels/quant_blocks.h), which
// compile it once per instruction set; this is its portable instance.
float HalfToFloat(uint16_t h) { return kernels::Fp16ToF32(h); }
float BFloat16ToFloat(uint16_t h) { return kernels::Bf16ToF32(h); }

std::optional<GgmlTypeTraits> GetGgmlTypeTraits(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return GgmlTypeTraits{"F32", 1, 4};
    case GgmlType::kF16: return GgmlTypeTraits{"F16", 1, 2};
    case GgmlType::kBF16: return GgmlTypeTraits{"BF16", 1, 2};
    case GgmlType::kQ4_0: return GgmlTypeTraits{"Q4_0", size_t(kernels::kQK), 18};
    case GgmlType::kQ4_1: return GgmlTypeTraits{"Q4_1", size_t(kernels::kQK), 20};
    case GgmlType::kQ5_0: return GgmlTypeTraits{"Q5_0", size_t(kernels::kQK), 22};
    case GgmlType::kQ5_1: return GgmlTypeTraits{"Q5_1", size_t(kernels::kQK), 24};
    case GgmlType::kQ8_0: return GgmlTypeTraits{"Q8_0", size_t(kernels::kQK), 34};
    case GgmlType::kQ4_K: return GgmlTypeTraits{"Q4_K", size_t(kernels::kQKK), 144};
    case GgmlType::kQ5_K: return GgmlTypeTraits{"Q5_K", size_t(kernels::kQKK), 176};
    case GgmlType::kQ6_K: return GgmlTypeTraits{"Q6_K", size_t(kernels::kQKK), 210};
  }
  return std::nullopt;
}

size_t GgmlRowBytes(GgmlType type, size_t n) {
  auto t = GetGgmlTypeTraits(static_cast<uint32_t>(type));
  return n / t->block_elems * t->block_bytes;
}

void DequantizeRow(GgmlType type, const void* src, float* dst, size_t n) {
  kernels::DequantRow(type, static_cast<const uint8_t*>(src), dst, int64_t(n));
}

}  // namespace attune::runtime
