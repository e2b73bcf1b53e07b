// A minimal safetensors reader and writer (https://github.com/huggingface/safetensors,
// "Format"): 8-byte little-endian header length, a JSON header mapping names
// to {dtype, shape, data_offsets}, then the raw little-endian data.
// Internal to export/.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "attune/core/result.h"

namespace attune::export_::internal {

struct StTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to float32 from F32, F16 or BF16
};

struct StFile {
  std::map<std::string, StTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Parses a whole file. DataLoss naming `path` and the tensor or offset for
// truncation, overlapping or out-of-range offsets, size/shape disagreement;
// Unsupported for a dtype other than F32/F16/BF16.
Result<StFile> ParseSafetensors(const std::string& bytes, const std::string& path);

// Serializes (F32 only), tensors in name order: equal inputs, equal bytes.
std::string SerializeSafetensors(const StFile& file);

// IEEE half / bfloat16 to float.
float HalfToFloat(uint16_t h);
float Bf16ToFloat(uint16_t h);

}  // namespace attune::export_::internal
