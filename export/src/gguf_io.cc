#include "src/gguf_io.h"

#include <cstring>
#include <optional>

#include "src/safetensors_io.h"

namespace attune::export_::internal {
namespace {

// gguf.md: value types and ggml types.
enum : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64
};
constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1;
constexpr uint64_t kAlignment = 32;
// Limits for a file that claims to be an adapter.
constexpr uint64_t kMaxCount = 1 << 20;
constexpr uint64_t kMaxString = 1 << 20;

class Reader {
 public:
  Reader(const std::string& b, const std::string& path) : b_(b), path_(path) {}
  template <typename T>
  Result<T> Get(const std::string& what) {
    if (b_.size() - pos_ < sizeof(T) || pos_ > b_.size()) return Truncated(what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  Result<std::string> String(const std::string& what) {
    ASSIGN_OR_RETURN(uint64_t n, Get<uint64_t>(what));
    if (n > kMaxString || b_.size() - pos_ < n) return Truncated(what);
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  Status Truncated(const std::string& what) const {
    return DataLossError(path_ + ": truncated or corrupt at offset " + std::to_string(pos_) + " reading " + what);
  }
  size_t pos() const { return pos_; }

 private:
  const std::string& b_;
  const std::string& path_;
  size_t pos_ = 0;
};

// Reads one value of `type`; scalars and strings are returned, arrays skipped.
Result<std::optional<GgufValue>> ReadValue(Reader& r, uint32_t type, const std::string& key, int depth) {
  if (type == kString) {
    ASSIGN_OR_RETURN(std::string s, r.String(key));
    return std::optional<GgufValue>(s);
  }
  if (type == kArray) {
    if (depth > 4) return r.Truncated(key + " (arrays nested too deep)");
    ASSIGN_OR_RETURN(uint32_t elem, r.Get<uint32_t>(key));
    ASSIGN_OR_RETURN(uint64_t n, r.Get<uint64_t>(key));
    if (n > kMaxCount) return r.Truncated(key + " (array too long)");
    for (uint64_t i = 0; i < n; ++i) {
      ASSIGN_OR_RETURN(auto ignored, ReadValue(r, elem, key, depth + 1));
      (void)ignored;
    }
    return std::optional<GgufValue>();
  }
  switch (type) {
#define ATTUNE_GGUF_NUM(code, T, V)                        \
  case code: {                                             \
    ASSIGN_OR_RETURN(T v, r.Get<T>(key));                  \
    return std::optional<GgufValue>(V(v));                 \
  }
    ATTUNE_GGUF_NUM(kU8, uint8_t, int64_t)
    ATTUNE_GGUF_NUM(kI8, int8_t, int64_t)
    ATTUNE_GGUF_NUM(kU16, uint16_t, int64_t)
    ATTUNE_GGUF_NUM(kI16, int16_t, int64_t)
    ATTUNE_GGUF_NUM(kU32, uint32_t, int64_t)
    ATTUNE_GGUF_NUM(kI32, int32_t, int64_t)
    ATTUNE_GGUF_NUM(kU64, uint64_t, int64_t)
    ATTUNE_GGUF_NUM(kI64, int64_t, int64_t)
    ATTUNE_GGUF_NUM(kF32, float, double)
    ATTUNE_GGUF_NUM(kF64, double, double)
#undef ATTUNE_GGUF_NUM
    case kBool: {
      ASSIGN_OR_RETURN(uint8_t v, r.Get<uint8_t>(key));
      return std::optional<GgufValue>(v != 0);
    }
    default:
      return r.Truncated(key + " (unknown value type " + std::to_string(type) + ")");
  }
}

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  uint32_t type = 0;
  uint64_t offset = 0;
};

Result<TensorInfo> ReadTensorInfo(Reader& r) {
  TensorInfo t;
  ASSIGN_OR_RETURN(t.name, r.String("a tensor name"));
  ASSIGN_OR_RETURN(uint32_t n_dims, r.Get<uint32_t>(t.name));
  if (n_dims < 1 || n_dims > 4) return r.Truncated("tensor '" + t.name + "' (bad dimension count)");
  std::vector<int64_t> ne(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) {
    ASSIGN_OR_RETURN(uint64_t v, r.Get<uint64_t>(t.name));
    if (v > (uint64_t{1} << 32)) return r.Truncated("tensor '" + t.name + "' (dimension too large)");
    ne[d] = int64_t(v);
  }
  t.shape.assign(ne.rbegin(), ne.rend());
  ASSIGN_OR_RETURN(t.type, r.Get<uint32_t>(t.name));
  ASSIGN_OR_RETURN(t.offset, r.Get<uint64_t>(t.name));
  return t;
}

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

void Pad(std::string& out) { out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, '\0'); }

}  // namespace

Result<GgufFile> ParseGguf(const std::string& bytes, const std::string& path) {
  Reader r(bytes, path);
  ASSIGN_OR_RETURN(uint32_t magic, r.Get<uint32_t>("the magic"));
  if (magic != 0x46554747) return DataLossError(path + ": not a GGUF file (bad magic)");
  ASSIGN_OR_RETURN(uint32_t version, r.Get<uint32_t>("the version"));
  if (version != 3) return UnsupportedError(path + ": GGUF version " + std::to_string(version) + " (supported: 3)");
  ASSIGN_OR_RETURN(uint64_t n_tensors, r.Get<uint64_t>("the tensor count"));
  ASSIGN_OR_RETURN(uint64_t n_kv, r.Get<uint64_t>("the metadata count"));
  if (n_tensors > kMaxCount || n_kv > kMaxCount) return r.Truncated("the header (counts too large)");
  GgufFile f;
  for (uint64_t i = 0; i < n_kv; ++i) {
    ASSIGN_OR_RETURN(std::string key, r.String("a metadata key"));
    ASSIGN_OR_RETURN(uint32_t type, r.Get<uint32_t>(key));
    ASSIGN_OR_RETURN(auto v, ReadValue(r, type, key, 0));
    if (v) f.kv[key] = *v;
  }
  uint64_t alignment = kAlignment;
  if (auto it = f.kv.find("general.alignment"); it != f.kv.end() && std::holds_alternative<int64_t>(it->second)) {
    alignment = uint64_t(std::get<int64_t>(it->second));
    if (alignment == 0 || alignment > 4096 || (alignment & (alignment - 1))) {
      return DataLossError(path + ": bad general.alignment " + std::to_string(alignment));
    }
  }
  std::vector<TensorInfo> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    ASSIGN_OR_RETURN(TensorInfo t, ReadTensorInfo(r));
    infos.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (const TensorInfo& t : infos) {
    if (t.type != kGgmlF32 && t.type != kGgmlF16) {
      return UnsupportedError(path + ": tensor '" + t.name + "' has ggml type " + std::to_string(t.type) +
                              " (supported: F32, F16)");
    }
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= uint64_t(d);
    const uint64_t size = n * (t.type == kGgmlF32 ? 4 : 2);
    if (data_start > bytes.size() || t.offset > bytes.size() - data_start || size > bytes.size() - data_start - t.offset) {
      return DataLossError(path + ": tensor '" + t.name + "' data at offset " + std::to_string(data_start + t.offset) +
                           " (+" + std::to_string(size) + " bytes) is past the end of the " +
                           std::to_string(bytes.size()) + "-byte file (truncated?)");
    }
    GgufTensor out;
    out.shape = t.shape;
    out.data.resize(n);
    const char* p = bytes.data() + data_start + t.offset;
    for (uint64_t i = 0; i < n; ++i) {
      if (t.type == kGgmlF32) {
        std::memcpy(&out.data[i], p + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out.data[i] = HalfToFloat(h);
      }
    }
    if (!f.tensors.emplace(t.name, std::move(out)).second) {
      return DataLossError(path + ": tensor '" + t.name + "' appears twice");
    }
  }
  return f;
}

std::string SerializeGguf(const GgufFile& f) {
  std::string out;
  Put<uint32_t>(out, 0x46554747);
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, f.tensors.size());
  Put<uint64_t>(out, f.kv.size());
  for (const auto& [key, v] : f.kv) {
    PutString(out, key);
    if (const auto* s = std::get_if<std::string>(&v)) {
      Put<uint32_t>(out, kString);
      PutString(out, *s);
    } else if (const auto* d = std::get_if<double>(&v)) {
      Put<uint32_t>(out, kF32);
      Put<float>(out, float(*d));
    } else if (const auto* i = std::get_if<int64_t>(&v)) {
      Put<uint32_t>(out, kU32);
      Put<uint32_t>(out, uint32_t(*i));
    } else {
      Put<uint32_t>(out, kBool);
      Put<uint8_t>(out, std::get<bool>(v) ? 1 : 0);
    }
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : f.tensors) {
    PutString(out, name);
    Put<uint32_t>(out, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) Put<uint64_t>(out, uint64_t(*it));
    Put<uint32_t>(out, kGgmlF32);
    Put<uint64_t>(out, offset);
    offset += (t.data.size() * 4 + kAlignment - 1) / kAlignment * kAlignment;
  }
  Pad(out);
  for (const auto& [name, t] : f.tensors) {
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
    Pad(out);
  }
  return out;
}

}  // namespace attune::export_::internal
