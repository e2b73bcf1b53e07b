// GGUF v2/v3 reader over a read-only memory map.
//
// Format: ggml's docs/gguf.md. The header, every metadata value (all 13 value
// types, arrays and nested arrays), every tensor info and the tensor data
// ranges are validated at Open; after a successful Open every accessor is
// safe on any file contents.
//
// Thread safety: a GgufFile is immutable after Open; concurrent reads are safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "attune/core/file.h"
#include "attune/core/result.h"
#include "attune/runtime/ggml_types.h"

namespace attune::runtime {

enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
  kFloat64 = 12,
};

struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType elem_type = GgufValueType::kUint8;  // arrays only
  // Integers of every width are widened to int64/uint64, floats to double.
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v;

  bool is_integer() const;
  // REQUIRES: is_integer(). Values above INT64_MAX are clamped.
  int64_t as_int() const;
  bool is_number() const { return is_integer() || type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64; }
  double as_double() const;
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const std::vector<GgufValue>* as_array() const { return std::get_if<std::vector<GgufValue>>(&v); }
};

struct GgufTensorInfo {
  std::string name;
  // ggml order: dims[0] is the fastest-varying (a row of a matrix).
  std::vector<uint64_t> dims;
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the map
};

class GgufFile {
 public:
  // Limits that keep a hostile file from allocating unbounded memory.
  static constexpr uint64_t kMaxStringBytes = 1ull << 26;   // 64 MiB
  static constexpr uint64_t kMaxArrayElems = 1ull << 26;
  static constexpr uint32_t kMaxDims = 4;
  static constexpr int kMaxNesting = 8;

  // Maps and validates `path`. Errors name the file and the byte offset:
  // DataLoss for truncation/corruption, InvalidArgument for a file that is not
  // GGUF, Unsupported for a newer version or a tensor type this build lacks.
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return map_.path(); }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  // nullptr when absent.
  const GgufValue* Find(const std::string& key) const;
  const GgufTensorInfo* FindTensor(const std::string& name) const;

  // Typed getters: NotFound when absent, InvalidArgument on a wrong type; the
  // message names the key and the file.
  Result<std::string> GetString(const std::string& key) const;
  Result<int64_t> GetInt(const std::string& key) const;
  Result<double> GetFloat(const std::string& key) const;
  // Absent keys give `fallback`; a present key of the wrong type is an error.
  Result<int64_t> GetIntOr(const std::string& key, int64_t fallback) const;
  Result<double> GetFloatOr(const std::string& key, double fallback) const;

 private:
  GgufFile() = default;
  Status Parse();

  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace attune::runtime
