#include "attune/export/gguf_lora.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "attune/core/file.h"
#include "src/gguf_io.h"
#include "src/names.h"

namespace attune::export_ {
namespace {

using adapters::Adapter;
using adapters::LoraTarget;
using adapters::kNumLoraTargets;

std::string TensorKey(int64_t layer, LoraTarget t, bool is_b) {
  return "blk." + std::to_string(layer) + "." + std::string(internal::GgufName(t)) + ".weight" +
         (is_b ? ".lora_b" : ".lora_a");
}

// The head count whose RoPE permutation applies to target t's rows, or 0.
Result<int64_t> PermuteHeads(LoraTarget t, const std::string& arch, const BaseModel& base, int64_t rows) {
  if (!GgufPermutesQk(arch) || (t != LoraTarget::kQ && t != LoraTarget::kK)) return int64_t{0};
  int64_t heads = t == LoraTarget::kQ ? base.n_heads : base.n_kv_heads;
  if (heads <= 0 || rows % (2 * heads) != 0) {
    return InvalidArgumentError("the " + std::string(t == LoraTarget::kQ ? "q" : "k") + " rows (" + std::to_string(rows) +
                                ") cannot be put in llama.cpp's RoPE order with " + std::to_string(heads) +
                                " heads (the base model's head counts are needed)");
  }
  return heads;
}

}  // namespace

Status WriteGgufLora(const Adapter& a, const BaseModel& base, const std::string& path) {
  RETURN_IF_ERROR(a.Validate());
  internal::GgufFile f;
  f.kv["general.architecture"] = a.arch;
  f.kv["general.type"] = std::string("adapter");
  f.kv["general.name"] = std::string("attune adapter");
  f.kv["adapter.type"] = std::string("lora");
  // llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is folded in.
  f.kv["adapter.lora.alpha"] = a.rslora ? a.alpha * std::sqrt(double(a.rank)) : a.alpha;
  for (int64_t l = 0; l < a.n_layers; ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const adapters::LoraPair& p = a.layers[size_t(l)][size_t(t)];
      if (p.empty()) continue;
      ASSIGN_OR_RETURN(int64_t heads, PermuteHeads(LoraTarget(t), a.arch, base, p.b.shape[0]));
      f.tensors[TensorKey(l, LoraTarget(t), false)] = {p.a.shape, p.a.data};
      std::vector<float> b = heads ? internal::PermuteRows(p.b.data, p.b.shape[0], p.b.shape[1], heads, false) : p.b.data;
      f.tensors[TensorKey(l, LoraTarget(t), true)] = {p.b.shape, std::move(b)};
    }
  }
  return WriteFileAtomic(path, internal::SerializeGguf(f));
}

namespace {

Result<std::string> StringKey(const internal::GgufFile& f, const std::string& key, const std::string& path) {
  auto it = f.kv.find(key);
  if (it == f.kv.end() || !std::holds_alternative<std::string>(it->second)) {
    return DataLossError(path + ": metadata key '" + key + "' is missing or not a string");
  }
  return std::get<std::string>(it->second);
}

struct ParsedKey {
  int64_t layer;
  LoraTarget target;
  bool is_b;
};

Result<ParsedKey> ParseKey(const std::string& key, const std::string& path) {
  static const std::regex re(R"(^blk\.(\d{1,5})\.([a-z_]+)\.weight\.lora_([ab])$)");
  std::smatch m;
  if (std::regex_match(key, m, re)) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (internal::GgufName(LoraTarget(t)) == m[2].str()) return ParsedKey{std::stoll(m[1]), LoraTarget(t), m[3] == "b"};
    }
  }
  return UnsupportedError(path + ": tensor '" + key +
                          "' is not a LoRA matrix of a supported map (attn_q, attn_k, attn_v, attn_output, ffn_gate, "
                          "ffn_up, ffn_down)");
}

Status CheckHeader(const internal::GgufFile& f, const BaseModel& base, const std::string& path) {
  ASSIGN_OR_RETURN(std::string type, StringKey(f, "general.type", path));
  if (type != "adapter") return UnsupportedError(path + ": general.type is '" + type + "', not 'adapter'");
  ASSIGN_OR_RETURN(std::string atype, StringKey(f, "adapter.type", path));
  if (atype != "lora") return UnsupportedError(path + ": adapter.type is '" + atype + "', only 'lora' is supported");
  ASSIGN_OR_RETURN(std::string arch, StringKey(f, "general.architecture", path));
  if (arch != base.info.arch) {
    return FailedPreconditionError(path + ": general.architecture is '" + arch + "', the base model is '" +
                                   base.info.arch + "' (hint: maybe wrong base model?)");
  }
  return Status::Ok();
}

}  // namespace

Result<Adapter> ReadGgufLora(const std::string& path, const BaseModel& base) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  ASSIGN_OR_RETURN(internal::GgufFile f, internal::ParseGguf(bytes, path));
  RETURN_IF_ERROR(CheckHeader(f, base, path));
  Adapter a;
  a.base_fingerprint = base.info.fingerprint;
  a.arch = base.info.arch;
  a.n_layers = base.info.n_layers;
  a.layers.resize(size_t(a.n_layers));
  a.training_config["imported_from"] = "gguf";
  a.created_unix_ms = internal::NowUnixMs();
  // llama.cpp treats a missing or zero alpha as scale 1, i.e. alpha = r.
  double alpha = 0;
  if (auto it = f.kv.find("adapter.lora.alpha"); it != f.kv.end() && std::holds_alternative<double>(it->second)) {
    alpha = std::get<double>(it->second);
  }
  for (auto& [key, t] : f.tensors) {
    ASSIGN_OR_RETURN(ParsedKey k, ParseKey(key, path));
    if (k.layer >= a.n_layers) {
      return FailedPreconditionError(path + ": tensor '" + key + "' is for layer " + std::to_string(k.layer) +
                                     ", the base model has " + std::to_string(a.n_layers) + " (hint: maybe wrong base model?)");
    }
    if (t.shape.size() != 2) return DataLossError(path + ": tensor '" + key + "' is not a matrix");
    const int64_t rank = k.is_b ? t.shape[1] : t.shape[0];
    if (a.rank == 0) a.rank = rank;
    if (rank != a.rank) {
      return DataLossError(path + ": tensor '" + key + "' has rank " + std::to_string(rank) + ", other tensors have " +
                           std::to_string(a.rank) + " (mixed ranks are not supported)");
    }
    const adapters::TargetDims& d = base.info.dims[size_t(k.target)];
    if (t.shape[0] != (k.is_b ? d.out : rank) || t.shape[1] != (k.is_b ? rank : d.in)) {
      return FailedPreconditionError(path + ": tensor '" + key + "' has shape [" + std::to_string(t.shape[0]) + ", " +
                                     std::to_string(t.shape[1]) + "], which does not fit the base model's [" +
                                     std::to_string(d.out) + " x " + std::to_string(d.in) +
                                     "] map (hint: maybe wrong base model?)");
    }
    if (!a.HasTarget(k.target)) a.targets.push_back(k.target);
    a.base_dims[size_t(k.target)] = d;
    adapters::LoraPair& p = a.layers[size_t(k.layer)][size_t(k.target)];
    if (k.is_b) {
      ASSIGN_OR_RETURN(int64_t heads, PermuteHeads(k.target, a.arch, base, t.shape[0]));
      p.b = {t.shape, heads ? internal::PermuteRows(t.data, t.shape[0], t.shape[1], heads, true) : std::move(t.data)};
    } else {
      p.a = {t.shape, std::move(t.data)};
    }
  }
  if (a.rank == 0) return DataLossError(path + ": the file holds no LoRA tensors");
  a.alpha = alpha != 0 ? alpha : double(a.rank);
  std::sort(a.targets.begin(), a.targets.end());
  for (int64_t l = 0; l < a.n_layers; ++l) {
    for (LoraTarget t : a.targets) {
      const adapters::LoraPair& p = a.layers[size_t(l)][size_t(t)];
      if (p.a.empty() != p.b.empty()) return DataLossError(path + ": tensor '" + TensorKey(l, t, p.a.empty()) + "' is missing (its pair is present)");
    }
  }
  Status valid = a.Validate();
  if (!valid.ok()) return valid.WithContext(path);
  return a;
}

}  // namespace attune::export_
