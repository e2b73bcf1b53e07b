#include "src/safetensors_io.h"

#include <cstring>
#include <nlohmann/json.hpp>

namespace attune::export_::internal {
namespace {

using nlohmann::json;

// A header this large is not an adapter (PEFT headers are a few KB per layer).
constexpr uint64_t kMaxHeaderBytes = uint64_t{64} << 20;

Status Bad(const std::string& path, const std::string& what) {
  return DataLossError(path + ": " + what + " (not a complete safetensors file?)");
}

uint64_t ReadLe64(const char* p) {
  uint64_t v = 0;
  std::memcpy(&v, p, 8);  // little-endian hosts only, as everywhere in Attune
  return v;
}

Result<StTensor> ParseTensor(const std::string& name, const json& info, const char* data, uint64_t data_len,
                             const std::string& path) {
  if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets")) {
    return Bad(path, "tensor '" + name + "' lacks dtype, shape or data_offsets");
  }
  StTensor t;
  uint64_t n = 1;
  for (const json& d : info["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 32)) {
      return Bad(path, "tensor '" + name + "' has a bad shape");
    }
    t.shape.push_back(d.get<int64_t>());
    n *= uint64_t(t.shape.back());
  }
  const std::string dtype = info["dtype"].is_string() ? info["dtype"].get<std::string>() : "";
  size_t elem = dtype == "F32" ? 4 : (dtype == "F16" || dtype == "BF16") ? 2 : 0;
  if (elem == 0) return UnsupportedError(path + ": tensor '" + name + "' has dtype " + info["dtype"].dump() + " (supported: F32, F16, BF16)");
  const json& off = info["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    return Bad(path, "tensor '" + name + "' has bad data_offsets");
  }
  uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > data_len) {
    return Bad(path, "tensor '" + name + "' data [" + std::to_string(begin) + ", " + std::to_string(end) +
                         ") is outside the " + std::to_string(data_len) + " data bytes");
  }
  if (end - begin != n * elem) {
    return Bad(path, "tensor '" + name + "' has " + std::to_string(end - begin) + " bytes for " + std::to_string(n) +
                         " " + dtype + " values");
  }
  t.data.resize(n);
  const char* p = data + begin;
  for (uint64_t i = 0; i < n; ++i) {
    if (elem == 4) {
      std::memcpy(&t.data[i], p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      t.data[i] = dtype == "F16" ? HalfToFloat(h) : Bf16ToFloat(h);
    }
  }
  return t;
}

}  // namespace

float HalfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float Bf16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

Result<StFile> ParseSafetensors(const std::string& bytes, const std::string& path) {
  if (bytes.size() < 8) return Bad(path, "file has " + std::to_string(bytes.size()) + " bytes");
  uint64_t header_len = ReadLe64(bytes.data());
  if (header_len > kMaxHeaderBytes || header_len > bytes.size() - 8) {
    return Bad(path, "header length " + std::to_string(header_len) + " exceeds the file");
  }
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + int64_t(header_len), nullptr, false);
  if (header.is_discarded() || !header.is_object()) return Bad(path, "header is not a JSON object");
  const char* data = bytes.data() + 8 + header_len;
  uint64_t data_len = bytes.size() - 8 - header_len;
  StFile file;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Bad(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (m->is_string()) file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(file.tensors[it.key()], ParseTensor(it.key(), *it, data, data_len, path));
  }
  return file;
}

std::string SerializeSafetensors(const StFile& file) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    uint64_t bytes = t.data.size() * 4;
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned, as the
  // reference writer does.
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::string out(8, '\0');
  uint64_t len = h.size();
  std::memcpy(out.data(), &len, 8);
  out += h;
  for (const auto& [name, t] : file.tensors) {
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
  }
  return out;
}

}  // namespace attune::export_::internal
