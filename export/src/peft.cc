#include "attune/export/peft.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "attune/core/file.h"
#include "src/names.h"
#include "src/safetensors_io.h"

namespace attune::export_ {
namespace {

using adapters::Adapter;
using adapters::LoraTarget;
using adapters::kNumLoraTargets;
using internal::HfLeafName;
using internal::HfModulePath;
using nlohmann::json;

// PEFT saves without the adapter name: "base_model.model." + the module path
// inside LlamaForCausalLM ("model.layers.N.self_attn.q_proj") + ".lora_A.weight".
std::string PeftKey(int64_t layer, LoraTarget t, bool is_b) {
  return "base_model.model.model.layers." + std::to_string(layer) + "." + std::string(HfModulePath(t)) +
         (is_b ? ".lora_B.weight" : ".lora_A.weight");
}

internal::StTensor ToSt(const adapters::Matrix& m) { return {m.shape, m.data}; }

internal::StTensor Zeros(int64_t rows, int64_t cols) {
  return {{rows, cols}, std::vector<float>(size_t(rows * cols), 0.0f)};
}

json ConfigJson(const Adapter& a, const BaseModel& base, const std::vector<int64_t>& layers) {
  json targets = json::array();
  for (int t = 0; t < kNumLoraTargets; ++t) {
    if (a.HasTarget(LoraTarget(t))) targets.push_back(std::string(HfLeafName(LoraTarget(t))));
  }
  json j = {{"peft_type", "LORA"},
            {"task_type", "CAUSAL_LM"},
            {"base_model_name_or_path", base.name_or_path},
            {"r", a.rank},
            {"lora_alpha", a.alpha},
            {"use_rslora", a.rslora},
            {"target_modules", targets},
            {"lora_dropout", 0.0},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"use_dora", false},
            {"init_lora_weights", true},
            {"inference_mode", true},
            {"modules_to_save", nullptr},
            {"rank_pattern", json::object()},
            {"alpha_pattern", json::object()},
            {"layers_to_transform", nullptr},
            {"layers_pattern", nullptr}};
  if (!layers.empty()) j["layers_to_transform"] = layers;
  return j;
}

}  // namespace

Status WritePeft(const Adapter& a, const BaseModel& base, const std::string& dir) {
  RETURN_IF_ERROR(a.Validate());
  internal::StFile st;
  st.metadata["format"] = "pt";
  // Layers where no target is present go to layers_to_transform's complement;
  // a target missing in an adapted layer is written as zeros (no change).
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < a.n_layers; ++l) {
    bool any = false;
    for (int t = 0; t < kNumLoraTargets; ++t) any = any || !a.layers[size_t(l)][size_t(t)].empty();
    if (!any) continue;
    layers.push_back(l);
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!a.HasTarget(LoraTarget(t))) continue;
      const adapters::LoraPair& p = a.layers[size_t(l)][size_t(t)];
      const adapters::TargetDims& d = a.base_dims[size_t(t)];
      st.tensors[PeftKey(l, LoraTarget(t), false)] = p.empty() ? Zeros(a.rank, d.in) : ToSt(p.a);
      st.tensors[PeftKey(l, LoraTarget(t), true)] = p.empty() ? Zeros(d.out, a.rank) : ToSt(p.b);
    }
  }
  if (int64_t(layers.size()) == a.n_layers) layers.clear();
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kPeftWeightsFile, internal::SerializeSafetensors(st)));
  return WriteFileAtomic(dir + "/" + kPeftConfigFile, ConfigJson(a, base, layers).dump(2) + "\n");
}

namespace {

struct PeftConfig {
  int64_t r = 0;
  double alpha = 0;
  bool rslora = false;
  std::vector<LoraTarget> targets;
};

bool IsEmptyOrNull(const json& j) { return j.is_null() || (j.is_object() || j.is_array() ? j.empty() : false); }

// A rank_pattern / alpha_pattern is honoured only when every entry equals the
// global value (then it changes nothing).
Status CheckPattern(const json& cfg, const char* key, double global, const std::string& where) {
  if (!cfg.contains(key) || IsEmptyOrNull(cfg[key])) return Status::Ok();
  if (!cfg[key].is_object()) return DataLossError(where + ": field '" + key + "' is not an object");
  for (auto it = cfg[key].begin(); it != cfg[key].end(); ++it) {
    if (!it->is_number() || it->get<double>() != global) {
      return UnsupportedError(where + ": field '" + std::string(key) + "' gives module '" + it.key() + "' " +
                              it->dump() + " instead of the global value; per-module ranks and alphas are not supported");
    }
  }
  return Status::Ok();
}

Status Refuse(const json& cfg, const char* key, const std::string& where, const std::string& why) {
  return UnsupportedError(where + ": field '" + key + "' = " + cfg[key].dump() + ": " + why);
}

Status CheckUnsupported(const json& cfg, const std::string& where) {
  auto truthy = [&](const char* k) { return cfg.contains(k) && cfg[k].is_boolean() && cfg[k].get<bool>(); };
  if (truthy("use_dora")) return Refuse(cfg, "use_dora", where, "DoRA is not supported");
  if (truthy("fan_in_fan_out")) return Refuse(cfg, "fan_in_fan_out", where, "only nn.Linear layouts are supported");
  if (truthy("lora_bias")) return Refuse(cfg, "lora_bias", where, "LoRA biases are not supported");
  if (cfg.contains("bias") && !(cfg["bias"].is_string() && cfg["bias"] == "none")) {
    return Refuse(cfg, "bias", where, "only \"none\" is supported");
  }
  for (const char* k : {"modules_to_save", "trainable_token_indices", "target_parameters"}) {
    if (cfg.contains(k) && !IsEmptyOrNull(cfg[k])) {
      return Refuse(cfg, k, where, "fully trained modules and extra parameters are not supported");
    }
  }
  if (truthy("use_qalora")) return Refuse(cfg, "use_qalora", where, "QALoRA is not supported");
  // LoRA variants that change the forward pass (peft 0.21 tuners/lora/config.py).
  for (const char* k : {"use_bdlora", "kasa_config", "monteclora_config", "arrow_config", "alora_invocation_tokens",
                        "layer_replication"}) {
    if (cfg.contains(k) && !IsEmptyOrNull(cfg[k]) && !(cfg[k].is_boolean() && !cfg[k].get<bool>())) {
      return Refuse(cfg, k, where, "this LoRA variant is not supported");
    }
  }
  return Status::Ok();
}

Result<std::vector<LoraTarget>> ParseTargets(const json& cfg, const std::string& where) {
  if (!cfg.contains("target_modules") || !cfg["target_modules"].is_array()) {
    std::string v = cfg.contains("target_modules") ? cfg["target_modules"].dump() : "missing";
    return UnsupportedError(where + ": field 'target_modules' = " + v +
                            ": only a list of module names is supported (not a regex or \"all-linear\")");
  }
  std::vector<LoraTarget> out;
  for (const json& m : cfg["target_modules"]) {
    std::string name = m.is_string() ? m.get<std::string>() : m.dump();
    bool found = false;
    for (int t = 0; t < kNumLoraTargets && !found; ++t) {
      if (HfLeafName(LoraTarget(t)) == name) {
        found = true;
        if (std::find(out.begin(), out.end(), LoraTarget(t)) == out.end()) out.push_back(LoraTarget(t));
      }
    }
    if (!found) {
      return UnsupportedError(where + ": target module '" + name +
                              "' is not supported (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                              "down_proj; embedding and lm_head LoRA are not)");
    }
  }
  if (out.empty()) return DataLossError(where + ": field 'target_modules' is empty");
  std::sort(out.begin(), out.end());  // PEFT's list is a set; keep our canonical order
  return out;
}

Result<PeftConfig> ParseConfig(const std::string& text, const std::string& where) {
  json cfg = json::parse(text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return DataLossError(where + ": not a JSON object");
  if (!cfg.contains("peft_type") || cfg["peft_type"] != "LORA") {
    return UnsupportedError(where + ": field 'peft_type' = " + (cfg.contains("peft_type") ? cfg["peft_type"].dump() : "missing") +
                            ": only LORA adapters are supported");
  }
  PeftConfig c;
  if (!cfg.contains("r") || !cfg["r"].is_number_integer()) return DataLossError(where + ": field 'r' is missing or not an integer");
  if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number()) {
    return DataLossError(where + ": field 'lora_alpha' is missing or not a number");
  }
  c.r = cfg["r"].get<int64_t>();
  c.alpha = cfg["lora_alpha"].get<double>();
  if (c.r < 1 || c.r > adapters::kMaxRank) return DataLossError(where + ": field 'r' = " + std::to_string(c.r) + " is out of range");
  if (cfg.contains("use_rslora") && cfg["use_rslora"].is_boolean()) c.rslora = cfg["use_rslora"].get<bool>();
  RETURN_IF_ERROR(CheckUnsupported(cfg, where));
  RETURN_IF_ERROR(CheckPattern(cfg, "rank_pattern", double(c.r), where));
  RETURN_IF_ERROR(CheckPattern(cfg, "alpha_pattern", c.alpha, where));
  ASSIGN_OR_RETURN(c.targets, ParseTargets(cfg, where));
  return c;
}

// Splits "base_model.model.model.layers.N.<module path>.lora_X.weight".
struct ParsedKey {
  int64_t layer = 0;
  LoraTarget target = LoraTarget::kQ;
  bool is_b = false;
};

Result<ParsedKey> ParseKey(const std::string& key, const std::string& where) {
  static const std::regex re(R"(^base_model\.model\.model\.layers\.(\d+)\.([a-z_]+\.[a-z_]+)\.lora_([AB])\.weight$)");
  std::smatch m;
  if (std::regex_match(key, m, re)) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (HfModulePath(LoraTarget(t)) == m[2].str() && m[1].length() < 6) {
        return ParsedKey{std::stoll(m[1].str()), LoraTarget(t), m[3] == "B"};
      }
    }
  }
  return UnsupportedError(where + ": tensor '" + key +
                          "' is not a LoRA A/B matrix of a supported module (DoRA magnitudes, embedding LoRA, "
                          "biases and saved modules are not supported)");
}

}  // namespace

Result<Adapter> ReadPeft(const std::string& path, const BaseModel& base) {
  std::string dir = path;
  const std::string suffix = std::string("/") + kPeftConfigFile;
  if (dir.size() > suffix.size() && dir.compare(dir.size() - suffix.size(), suffix.size(), suffix) == 0) {
    dir.resize(dir.size() - suffix.size());
  }
  const std::string cfg_path = dir + "/" + kPeftConfigFile, st_path = dir + "/" + kPeftWeightsFile;
  ASSIGN_OR_RETURN(std::string cfg_text, ReadFile(cfg_path));
  ASSIGN_OR_RETURN(PeftConfig cfg, ParseConfig(cfg_text, cfg_path));
  ASSIGN_OR_RETURN(std::string st_bytes, ReadFile(st_path));
  ASSIGN_OR_RETURN(internal::StFile st, internal::ParseSafetensors(st_bytes, st_path));

  Adapter a;
  a.base_fingerprint = base.info.fingerprint;
  a.arch = base.info.arch;
  a.n_layers = base.info.n_layers;
  a.rank = cfg.r;
  a.alpha = cfg.alpha;
  a.rslora = cfg.rslora;
  a.targets = cfg.targets;
  a.layers.resize(size_t(a.n_layers));
  for (LoraTarget t : a.targets) a.base_dims[size_t(t)] = base.info.dims[size_t(t)];
  a.training_config["imported_from"] = "peft";
  a.created_unix_ms = internal::NowUnixMs();
  for (auto& [key, tensor] : st.tensors) {
    ASSIGN_OR_RETURN(ParsedKey k, ParseKey(key, st_path));
    if (k.layer >= a.n_layers) {
      return FailedPreconditionError(st_path + ": tensor '" + key + "' is for layer " + std::to_string(k.layer) +
                                     ", the base model has " + std::to_string(a.n_layers) + " (hint: maybe wrong base model?)");
    }
    if (!a.HasTarget(k.target)) {
      return DataLossError(st_path + ": tensor '" + key + "' is for a module not in the config's target_modules");
    }
    const adapters::TargetDims& d = a.base_dims[size_t(k.target)];
    const int64_t want_rows = k.is_b ? d.out : cfg.r, want_cols = k.is_b ? cfg.r : d.in;
    if (tensor.shape.size() != 2) return DataLossError(st_path + ": tensor '" + key + "' is not a matrix");
    const int64_t rank_dim = k.is_b ? tensor.shape[1] : tensor.shape[0];
    if (rank_dim != cfg.r) {
      return DataLossError(st_path + ": tensor '" + key + "' has rank " + std::to_string(rank_dim) + " but " +
                           cfg_path + " field 'r' says " + std::to_string(cfg.r));
    }
    if (tensor.shape[0] != want_rows || tensor.shape[1] != want_cols) {
      return FailedPreconditionError(st_path + ": tensor '" + key + "' has shape [" + std::to_string(tensor.shape[0]) +
                                     ", " + std::to_string(tensor.shape[1]) + "], the base model needs [" +
                                     std::to_string(want_rows) + ", " + std::to_string(want_cols) +
                                     "] (hint: maybe wrong base model?)");
    }
    adapters::Matrix& m = k.is_b ? a.layers[size_t(k.layer)][size_t(k.target)].b : a.layers[size_t(k.layer)][size_t(k.target)].a;
    m.shape = tensor.shape;
    m.data = std::move(tensor.data);
  }
  for (int64_t l = 0; l < a.n_layers; ++l) {
    for (LoraTarget t : a.targets) {
      const adapters::LoraPair& p = a.layers[size_t(l)][size_t(t)];
      if (p.a.empty() != p.b.empty()) {
        return DataLossError(st_path + ": tensor '" + PeftKey(l, t, p.a.empty()) + "' is missing (its pair is present)");
      }
    }
  }
  Status valid = a.Validate();
  if (!valid.ok()) return valid.WithContext(st_path);
  return a;
}

}  // namespace attune::export_
