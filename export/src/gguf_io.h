// A minimal GGUF v3 reader and writer for adapter files
// (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). Only what
// GGUF-LoRA needs: string/float/int metadata and F32/F16 tensors. Internal to
// export/.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "attune/core/result.h"

namespace attune::export_::internal {

// Metadata values a GGUF-LoRA file uses. Arrays and other types are parsed
// (to be skipped) but not kept.
using GgufValue = std::variant<std::string, double, int64_t, bool>;

struct GgufTensor {
  std::vector<int64_t> shape;  // row-major (numpy) order: ggml ne reversed
  std::vector<float> data;
};

struct GgufFile {
  std::map<std::string, GgufValue> kv;
  std::map<std::string, GgufTensor> tensors;
};

// Parses a whole file. DataLoss naming `path` and the key, tensor or offset
// for anything truncated or inconsistent; Unsupported for another GGUF
// version or a tensor type other than F32/F16.
Result<GgufFile> ParseGguf(const std::string& bytes, const std::string& path);

// Serializes with alignment 32: string kv as STRING, double as FLOAT32,
// int64 as UINT32, bool as BOOL; tensors as F32 in name order.
std::string SerializeGguf(const GgufFile& file);

}  // namespace attune::export_::internal
