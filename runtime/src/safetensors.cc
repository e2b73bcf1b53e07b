#include "attune/runtime/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace attune::runtime {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // as the reference reader

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> ck(new SafetensorsCheckpoint());
  std::string index = path + "/model.safetensors.index.json";
  std::string single = path + "/model.safetensors";
  if (PathExists(index)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(index));
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return DataLossError("'" + index + "': not valid JSON with a \"weight_map\" object");
    }
    std::set<std::string> files;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
        return DataLossError("'" + index + "': weight_map entry '" + name + "' is not a file name");
      }
      files.insert(file.get<std::string>());
    }
    for (const auto& f : files) RETURN_IF_ERROR(ck->AddFile(path + "/" + f));
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!ck->Find(name)) {
        return DataLossError("'" + index + "': tensor '" + name + "' is listed for '" +
                             file.get<std::string>() + "' but that shard lacks it");
      }
    }
  } else if (PathExists(single)) {
    RETURN_IF_ERROR(ck->AddFile(single));
  } else if (PathExists(path) && path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") {
    RETURN_IF_ERROR(ck->AddFile(path));
  } else {
    return NotFoundError("no safetensors weights at '" + path +
                         "' (expected model.safetensors or model.safetensors.index.json)");
  }
  return ck;
}

Status SafetensorsCheckpoint::AddFile(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile mf, MappedFile::Open(path));
  auto bad = [&](const std::string& what) {
    return DataLossError("safetensors file '" + path + "': " + what);
  };
  if (mf.size() < 8) return bad("truncated header (file is " + std::to_string(mf.size()) + " bytes)");
  uint64_t n;
  std::memcpy(&n, mf.data(), 8);
  if (n > kMaxHeaderBytes || n > mf.size() - 8) return bad("header size " + std::to_string(n) + " at offset 0 runs past the end of the file");
  nlohmann::json header = nlohmann::json::parse(mf.data() + 8, mf.data() + 8 + n, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const uint8_t* base = mf.data() + 8 + n;
  uint64_t data_size = mf.size() - 8 - n;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets")) {
      return bad("tensor '" + name + "' lacks dtype, shape or data_offsets");
    }
    TensorView t;
    t.name = name;
    t.file = path;
    const auto& dt = info["dtype"];
    if (!dt.is_string()) return bad("tensor '" + name + "' dtype is not a string");
    std::string dtype = dt.get<std::string>();
    size_t elem;
    if (dtype == "F32") { t.type = GgmlType::kF32; elem = 4; }
    else if (dtype == "F16") { t.type = GgmlType::kF16; elem = 2; }
    else if (dtype == "BF16") { t.type = GgmlType::kBF16; elem = 2; }
    else return InvalidArgumentError("safetensors file '" + path + "': tensor '" + name + "' has dtype " + dtype + " (supported: F32, F16, BF16)");
    if (!info["shape"].is_array() || info["shape"].size() > 8) return bad("tensor '" + name + "' shape is not an array of at most 8 dims");
    uint64_t numel = 1;
    for (auto& d : info["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40)) return bad("tensor '" + name + "' has an absurd shape");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (1ull << 42) / v) return bad("tensor '" + name + "' has an absurd shape");
      numel *= v;
      t.shape.push_back(int64_t(v));
    }
    const auto& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return bad("tensor '" + name + "' data_offsets is not [begin, end]");
    }
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size) return bad("tensor '" + name + "' data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] run past the end of the file");
    if (e - b != numel * elem) return bad("tensor '" + name + "' has " + std::to_string(e - b) + " bytes but its shape needs " + std::to_string(numel * elem));
    t.data = base + b;
    t.n_bytes = e - b;
    if (tensors_.count(name)) return bad("tensor '" + name + "' appears in two files");
    tensors_.emplace(name, std::move(t));
  }
  maps_.push_back(std::move(mf));
  return Status::Ok();
}

const TensorView* SafetensorsCheckpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace attune::runtime
