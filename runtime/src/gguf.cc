#include "attune/runtime/gguf.h"

#include <cstring>
#include <limits>

namespace attune::runtime {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian

// Bounds-checked little-endian cursor over the mapped file.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t offset() const { return off_; }

  Status Error(const std::string& what) const {
    return DataLossError("GGUF file '" + path_ + "': " + what + " at offset " +
                         std::to_string(off_));
  }

  template <typename T>
  Status Read(T* out, const char* what) {
    if (size_ - off_ < sizeof(T)) return Error(std::string("truncated reading ") + what);
    std::memcpy(out, data_ + off_, sizeof(T));
    off_ += sizeof(T);
    return Status::Ok();
  }

  Status ReadString(std::string* out, const char* what) {
    uint64_t len;
    RETURN_IF_ERROR(Read(&len, what));
    if (len > GgufFile::kMaxStringBytes || len > size_ - off_) {
      off_ -= 8;
      return Error(std::string("string length ") + std::to_string(len) + " of " + what +
                   " runs past the end of the file");
    }
    out->assign(reinterpret_cast<const char*>(data_ + off_), len);
    off_ += len;
    return Status::Ok();
  }

  size_t remaining() const { return size_ - off_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t off_ = 0;
  const std::string& path_;
};

size_t MinValueBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16: case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kFloat32: return 4;
    default: return 8;  // uint64, int64, float64, string length, array header >= 8
  }
}

Status ReadValue(Reader& r, GgufValueType type, GgufValue* out, int depth, const std::string& key) {
  out->type = type;
  auto read_int = [&](auto tag) -> Status {
    using T = decltype(tag);
    T x;
    RETURN_IF_ERROR(r.Read(&x, key.c_str()));
    if constexpr (std::is_signed_v<T>) out->v = int64_t(x);
    else out->v = uint64_t(x);
    return Status::Ok();
  };
  switch (type) {
    case GgufValueType::kUint8: return read_int(uint8_t{});
    case GgufValueType::kInt8: return read_int(int8_t{});
    case GgufValueType::kUint16: return read_int(uint16_t{});
    case GgufValueType::kInt16: return read_int(int16_t{});
    case GgufValueType::kUint32: return read_int(uint32_t{});
    case GgufValueType::kInt32: return read_int(int32_t{});
    case GgufValueType::kUint64: return read_int(uint64_t{});
    case GgufValueType::kInt64: return read_int(int64_t{});
    case GgufValueType::kFloat32: {
      float f;
      RETURN_IF_ERROR(r.Read(&f, key.c_str()));
      out->v = double(f);
      return Status::Ok();
    }
    case GgufValueType::kFloat64: {
      double f;
      RETURN_IF_ERROR(r.Read(&f, key.c_str()));
      out->v = f;
      return Status::Ok();
    }
    case GgufValueType::kBool: {
      uint8_t b;
      RETURN_IF_ERROR(r.Read(&b, key.c_str()));
      if (b > 1) return r.Error("bool value " + std::to_string(b) + " of key '" + key + "'");
      out->v = b == 1;
      return Status::Ok();
    }
    case GgufValueType::kString: {
      std::string s;
      RETURN_IF_ERROR(r.ReadString(&s, key.c_str()));
      out->v = std::move(s);
      return Status::Ok();
    }
    case GgufValueType::kArray: {
      if (depth >= GgufFile::kMaxNesting) return r.Error("arrays nested too deep in key '" + key + "'");
      uint32_t et;
      uint64_t n;
      RETURN_IF_ERROR(r.Read(&et, key.c_str()));
      if (et > uint32_t(GgufValueType::kFloat64)) {
        return r.Error("unknown array element type " + std::to_string(et) + " of key '" + key + "'");
      }
      RETURN_IF_ERROR(r.Read(&n, key.c_str()));
      auto elem = static_cast<GgufValueType>(et);
      if (n > GgufFile::kMaxArrayElems || n * MinValueBytes(elem) > r.remaining()) {
        return r.Error("array of " + std::to_string(n) + " elements of key '" + key +
                       "' runs past the end of the file");
      }
      out->elem_type = elem;
      std::vector<GgufValue> items(n);
      for (auto& item : items) RETURN_IF_ERROR(ReadValue(r, elem, &item, depth + 1, key));
      out->v = std::move(items);
      return Status::Ok();
    }
  }
  return r.Error("unknown value type " + std::to_string(uint32_t(type)) + " of key '" + key + "'");
}

}  // namespace

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}

int64_t GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) {
    return *u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                               : int64_t(*u);
  }
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  return 0;
}

double GgufValue::as_double() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* u = std::get_if<uint64_t>(&v)) return double(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return double(*i);
  return 0;
}

Result<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  ASSIGN_OR_RETURN(f->map_, MappedFile::Open(path));
  RETURN_IF_ERROR(f->Parse());
  return f;
}

Status GgufFile::Parse() {
  const std::string& p = map_.path();
  Reader r(map_.data(), map_.size(), p);
  uint32_t magic;
  if (map_.size() < 4) return InvalidArgumentError("'" + p + "' is not a GGUF file: it is only " + std::to_string(map_.size()) + " bytes");
  RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (magic != kGgufMagic) {
    return InvalidArgumentError("'" + p + "' is not a GGUF file (bad magic at offset 0; expected \"GGUF\")");
  }
  RETURN_IF_ERROR(r.Read(&version_, "version"));
  if (version_ < 2) return UnsupportedError("GGUF file '" + p + "': version " + std::to_string(version_) + " is too old (need 2 or 3)");
  if (version_ > 3) return UnsupportedError("GGUF file '" + p + "': version " + std::to_string(version_) + " is newer than this build supports (3)");
  uint64_t n_tensors, n_kv;
  RETURN_IF_ERROR(r.Read(&n_tensors, "tensor count"));
  RETURN_IF_ERROR(r.Read(&n_kv, "metadata count"));
  // Each kv needs >= 13 bytes and each tensor info >= 28: reject absurd counts
  // before allocating.
  if (n_kv > r.remaining() / 13) return r.Error("metadata count " + std::to_string(n_kv) + " exceeds the file size");
  if (n_tensors > r.remaining() / 28) return r.Error("tensor count " + std::to_string(n_tensors) + " exceeds the file size");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    RETURN_IF_ERROR(r.ReadString(&key, "metadata key"));
    uint32_t type;
    RETURN_IF_ERROR(r.Read(&type, "value type"));
    if (type > uint32_t(GgufValueType::kFloat64)) {
      return r.Error("unknown value type " + std::to_string(type) + " of key '" + key + "'");
    }
    GgufValue value;
    RETURN_IF_ERROR(ReadValue(r, static_cast<GgufValueType>(type), &value, 0, key));
    if (!kv_.emplace(key, std::move(value)).second) return r.Error("duplicate metadata key '" + key + "'");
  }
  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || (a->as_int() & (a->as_int() - 1)) != 0 || a->as_int() > 1 << 20) {
      return DataLossError("GGUF file '" + p + "': general.alignment must be a power of two");
    }
    alignment_ = uint64_t(a->as_int());
  }

  tensors_.resize(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo& t = tensors_[i];
    RETURN_IF_ERROR(r.ReadString(&t.name, "tensor name"));
    uint32_t n_dims;
    RETURN_IF_ERROR(r.Read(&n_dims, "tensor dimension count"));
    if (n_dims == 0 || n_dims > kMaxDims) return r.Error("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    t.dims.resize(n_dims);
    t.n_elements = 1;
    for (auto& d : t.dims) {
      RETURN_IF_ERROR(r.Read(&d, "tensor dimension"));
      if (d == 0 || d > (1ull << 40) || t.n_elements > (1ull << 42) / d) {
        return r.Error("tensor '" + t.name + "' has an absurd shape");
      }
      t.n_elements *= d;
    }
    uint32_t type;
    RETURN_IF_ERROR(r.Read(&type, "tensor type"));
    auto traits = GetGgmlTypeTraits(type);
    if (!traits) {
      return UnsupportedError("GGUF file '" + p + "': tensor '" + t.name + "' has type " + std::to_string(type) +
                              ", which this build does not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
    }
    t.type = static_cast<GgmlType>(type);
    if (t.dims[0] % traits->block_elems != 0) {
      return r.Error("tensor '" + t.name + "' row length " + std::to_string(t.dims[0]) + " is not a multiple of the " + std::string(traits->name) + " block size");
    }
    t.n_bytes = t.n_elements / traits->block_elems * traits->block_bytes;
    RETURN_IF_ERROR(r.Read(&t.offset, "tensor offset"));
    if (t.offset % alignment_ != 0) return r.Error("tensor '" + t.name + "' offset is not aligned");
    if (!tensor_index_.emplace(t.name, i).second) return r.Error("duplicate tensor name '" + t.name + "'");
  }
  uint64_t data_start = (r.offset() + alignment_ - 1) / alignment_ * alignment_;
  for (auto& t : tensors_) {
    if (data_start > map_.size() || t.offset > map_.size() - data_start ||
        t.n_bytes > map_.size() - data_start - t.offset) {
      return DataLossError("GGUF file '" + p + "': data of tensor '" + t.name + "' (offset " +
                           std::to_string(data_start + t.offset) + ", " + std::to_string(t.n_bytes) +
                           " bytes) runs past the end of the file (" + std::to_string(map_.size()) +
                           " bytes); the file is truncated");
    }
    t.data = map_.data() + data_start + t.offset;
  }
  return Status::Ok();
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFoundError("GGUF file '" + path() + "' lacks metadata key '" + key + "'");
  if (!v->as_string()) return InvalidArgumentError("GGUF file '" + path() + "': metadata key '" + key + "' is not a string");
  return *v->as_string();
}

Result<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFoundError("GGUF file '" + path() + "' lacks metadata key '" + key + "'");
  if (!v->is_integer()) return InvalidArgumentError("GGUF file '" + path() + "': metadata key '" + key + "' is not an integer");
  return v->as_int();
}

Result<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFoundError("GGUF file '" + path() + "' lacks metadata key '" + key + "'");
  if (!v->is_number()) return InvalidArgumentError("GGUF file '" + path() + "': metadata key '" + key + "' is not a number");
  return v->as_double();
}

Result<int64_t> GgufFile::GetIntOr(const std::string& key, int64_t fallback) const {
  if (!Find(key)) return fallback;
  return GetInt(key);
}

Result<double> GgufFile::GetFloatOr(const std::string& key, double fallback) const {
  if (!Find(key)) return fallback;
  return GetFloat(key);
}

}  // namespace attune::runtime
