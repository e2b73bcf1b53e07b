// Safetensors reader (single file or a sharded Hugging Face checkpoint).
//
// Format: https://github.com/huggingface/safetensors ("Format" section):
// u64 little-endian header size N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data. Shards are listed by model.safetensors.index.json
// ({"weight_map": {tensor: file}}).
//
// Thread safety: immutable after Open.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attune/core/file.h"
#include "attune/core/result.h"
#include "attune/runtime/ggml_types.h"

namespace attune::runtime {

// A tensor in a mapped file. `shape` is in row-major (PyTorch) order.
struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  GgmlType type = GgmlType::kF32;  // F32, F16 or BF16 for safetensors
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  std::string file;  // for error messages
  int64_t numel() const;
};

class SafetensorsCheckpoint {
 public:
  // Opens `path`: a .safetensors file, or a directory holding
  // model.safetensors or model.safetensors.index.json plus shards.
  // DataLoss (corrupt/truncated, naming file and field), InvalidArgument
  // (unsupported dtype, bad JSON), NotFound (no weights in the directory).
  static Result<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  // nullptr when absent.
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  Status AddFile(const std::string& path);
  std::vector<MappedFile> maps_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace attune::runtime
