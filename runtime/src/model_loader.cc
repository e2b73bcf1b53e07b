// Model::Load: reads GGUF or Hugging Face weights into the chosen weight storage.
#include <ATen/ATen.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "attune/runtime/gguf.h"
#include "attune/runtime/model.h"
#include "attune/runtime/safetensors.h"
#include "runtime/src/gguf_model.h"
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {

namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Dequantizes a raw tensor into a new fp32 tensor (the kernels' SIMD rows).
at::Tensor ToFloat(const RawTensor& t) {
  at::Tensor out = at::empty(t.shape, at::kFloat);
  const int64_t row = t.shape.back(), rows = out.numel() / row;
  kernels::DequantizeRows(t.type, t.data, GgmlRowBytes(t.type, size_t(row)), rows, row, out.data_ptr<float>());
  return out;
}

// Undoes the Q/K row permutation of GGUF llama files (gguf_model.h).
at::Tensor UnpermuteQk(const at::Tensor& w, int64_t n_head) {
  int64_t out = w.size(0);
  return w.reshape({n_head, out / n_head / 2, 2, w.size(1)}).transpose(1, 2).reshape({out, w.size(1)}).contiguous();
}

// The matrix `t` [rows, cols] in the chosen storage; with `unpermute_heads`
// > 0 its rows are un-permuted as above (a copy of the blocks, reordered).
Result<LinearWeight> ToLinear(const RawTensor& t, WeightStorage storage, int64_t unpermute_heads,
                              const std::shared_ptr<const void>& owner, const std::string& file) {
  if (storage == WeightStorage::kFp32) {
    at::Tensor w = ToFloat(t);
    if (unpermute_heads > 0) w = UnpermuteQk(w, unpermute_heads);
    return LinearWeight(w);
  }
  ASSIGN_OR_RETURN(QuantMatrix q, ToQuantMatrix(t, unpermute_heads, owner, file));
  return LinearWeight(std::move(q));
}

}  // namespace

// Reads weights by name from either source and checks their shapes.
class ModelLoader {
 public:
  Status LoadGguf(const std::string& path, const LoadOptions& opts, Model* m);
  Status LoadHf(const std::string& dir, const LoadOptions& opts, Model* m);

 private:
  using Fetch = std::function<Result<RawTensor>(const std::string& name, const std::vector<int64_t>& shape, bool optional)>;
  // `owner` keeps the bytes that `fetch` points into alive.
  Status BuildWeights(const Fetch& fetch, bool gguf_names, const LoadOptions& opts, const std::shared_ptr<const void>& owner,
                      const std::string& file, Model* m);
  Sha256 fp_;
};

Status ModelLoader::BuildWeights(const Fetch& fetch, bool gguf_names, const LoadOptions& opts,
                                 const std::shared_ptr<const void>& owner, const std::string& file, Model* m) {
  const ModelConfig& c = m->config_;
  using Role = TensorSpec::Role;
  m->layers_.resize(size_t(c.n_layers));
  for (const TensorSpec& spec : ModelTensors(c, gguf_names)) {
    ASSIGN_OR_RETURN(RawTensor t, fetch(spec.name, spec.shape, spec.optional));
    LayerWeights* L = spec.layer >= 0 ? &m->layers_[size_t(spec.layer)] : nullptr;
    switch (spec.role) {
      case Role::kEmbed: {
        ASSIGN_OR_RETURN(m->embed_, ToLinear(t, opts.weights, 0, owner, file));
        break;
      }
      case Role::kOutputNorm: m->out_norm_ = ToFloat(t); break;
      case Role::kOutput: {
        if (!t.present()) {
          m->config_.tied_embeddings = true;  // no separate output matrix: tied (as llama.cpp assumes)
          m->output_ = m->embed_;
        } else {
          ASSIGN_OR_RETURN(m->output_, ToLinear(t, opts.weights, 0, owner, file));
        }
        break;
      }
      case Role::kAttnNorm: L->attn_norm = ToFloat(t); break;
      case Role::kFfnNorm: L->ffn_norm = ToFloat(t); break;
      case Role::kProj: {
        ASSIGN_OR_RETURN(L->proj[size_t(spec.target)], ToLinear(t, opts.weights, spec.unpermute_heads, owner, file));
        break;
      }
      case Role::kBias: {
        at::Tensor b = ToFloat(t);
        if (spec.unpermute_heads > 0) b = UnpermuteQk(b.view({-1, 1}), spec.unpermute_heads).view({-1});
        (spec.target == kQ ? L->q_bias : spec.target == kK ? L->k_bias : L->v_bias) = b;
        break;
      }
    }
  }
  std::vector<float> cos, sin;
  RopeTables(c, &cos, &sin);
  const int64_t rows = std::max<int64_t>(c.context_length, 1);
  m->rope_cos_ = at::from_blob(cos.data(), {rows, c.head_dim / 2}, at::kFloat).clone();
  m->rope_sin_ = at::from_blob(sin.data(), {rows, c.head_dim / 2}, at::kFloat).clone();
  m->fingerprint_ = fp_.FinishHex();
  return Status::Ok();
}

Status ModelLoader::LoadGguf(const std::string& path, const LoadOptions& opts, Model* m) {
  ASSIGN_OR_RETURN(auto opened, GgufFile::Open(path));
  // Shared: quantized weights point into its mapping.
  std::shared_ptr<const GgufFile> g(std::move(opened));
  ASSIGN_OR_RETURN(m->config_, ReadGgufConfig(*g, path));
  auto fetch = [&](const std::string& name, const std::vector<int64_t>& shape, bool optional) -> Result<RawTensor> {
    return FetchGgufTensor(*g, path, name, shape, optional, &fp_);
  };
  RETURN_IF_ERROR(BuildWeights(fetch, /*gguf_names=*/true, opts, g, path, m));

  return ReadGgufTextSide(*g, path, opts.chat_template, opts.allow_missing_tokenizer, &m->tokenizer_, &m->chat_);
}

Status ModelLoader::LoadHf(const std::string& dir, const LoadOptions& opts, Model* m) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/config.json"));
  const std::string where = "'" + dir + "/config.json'";
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgumentError(where + " is not valid JSON");
  ModelConfig& c = m->config_;
  c.arch_name = j.value("model_type", std::string());
  if (c.arch_name == "llama") c.arch = Architecture::kLlama;
  else if (c.arch_name == "mistral") c.arch = Architecture::kMistral;
  else if (c.arch_name == "qwen2") c.arch = Architecture::kQwen2;
  else return UnsupportedError(where + ": model_type '" + c.arch_name + "' is not supported (llama, mistral, qwen2)");
  auto get_int = [&](const char* key, int64_t* out) -> Status {
    if (!j.contains(key) || !j[key].is_number_integer()) return InvalidArgumentError(where + ": '" + key + "' is missing or not an integer");
    *out = j[key].get<int64_t>();
    if (*out <= 0) return InvalidArgumentError(where + ": '" + key + "' must be positive");
    return Status::Ok();
  };
  RETURN_IF_ERROR(get_int("vocab_size", &c.vocab_size));
  RETURN_IF_ERROR(get_int("hidden_size", &c.hidden));
  RETURN_IF_ERROR(get_int("intermediate_size", &c.intermediate));
  RETURN_IF_ERROR(get_int("num_hidden_layers", &c.n_layers));
  RETURN_IF_ERROR(get_int("num_attention_heads", &c.n_heads));
  c.n_kv_heads = c.n_heads;
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()) RETURN_IF_ERROR(get_int("num_key_value_heads", &c.n_kv_heads));
  c.head_dim = c.hidden / c.n_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) RETURN_IF_ERROR(get_int("head_dim", &c.head_dim));
  RETURN_IF_ERROR(get_int("max_position_embeddings", &c.context_length));
  c.rope_theta = j.value("rope_theta", 10000.0);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) c.rope_theta = j["rope_parameters"].value("rope_theta", c.rope_theta);
  c.rms_eps = j.value("rms_norm_eps", 1e-6);
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  c.qkv_bias = c.arch == Architecture::kQwen2 || j.value("attention_bias", false);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    std::string t = j["rope_scaling"].value("rope_type", j["rope_scaling"].value("type", std::string("default")));
    if (t == "linear") c.rope_linear_scale = j["rope_scaling"].value("factor", 1.0);
    else if (t != "default") return UnsupportedError(where + ": rope_scaling type '" + t + "' is not supported (default, linear)");
  }
  if (c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0) return InvalidArgumentError(where + ": inconsistent attention hyper-parameters");
  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer() &&
      j["sliding_window"].get<int64_t>() < c.context_length && j.value("use_sliding_window", true)) {
    return UnsupportedError(where + ": sliding-window attention (sliding_window = " + std::to_string(j["sliding_window"].get<int64_t>()) +
                            ", below max_position_embeddings) is not supported");
  }
  c.name = dir.substr(dir.find_last_of('/') + 1);

  ASSIGN_OR_RETURN(auto opened, SafetensorsCheckpoint::Open(dir));
  std::shared_ptr<const SafetensorsCheckpoint> ck(std::move(opened));
  auto fetch = [&](const std::string& name, const std::vector<int64_t>& shape, bool optional) -> Result<RawTensor> {
    const TensorView* t = ck->Find(name);
    if (!t) {
      if (optional) return RawTensor{};
      return DataLossError("checkpoint '" + dir + "': tensor '" + name + "' is missing");
    }
    if (t->shape != shape) return DataLossError("checkpoint '" + dir + "': tensor '" + name + "' in '" + t->file + "' has the wrong shape for config.json");
    fp_.Update(name);
    fp_.Update(t->data, size_t(t->n_bytes));
    return RawTensor{name, t->type, t->data, shape};
  };
  if (c.tied_embeddings && ck->Find("lm_head.weight")) c.tied_embeddings = false;
  RETURN_IF_ERROR(BuildWeights(fetch, /*gguf_names=*/false, opts, ck, dir, m));

  std::string tok_path = dir + "/tokenizer.json";
  if (PathExists(tok_path)) {
    ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::FromHfJson(tok_path));
  } else if (!opts.allow_missing_tokenizer) {
    return InvalidArgumentError("model directory '" + dir + "' has no tokenizer.json");
  }
  std::string jinja;
  if (auto tc = ReadFile(dir + "/tokenizer_config.json"); tc.ok()) {
    nlohmann::json t = nlohmann::json::parse(*tc, nullptr, false);
    if (t.is_object() && t.contains("chat_template") && t["chat_template"].is_string()) jinja = t["chat_template"].get<std::string>();
  }
  if (auto ct = ReadFile(dir + "/chat_template.jinja"); ct.ok()) jinja = *ct;
  auto chat = ChatTemplate::Detect(jinja, opts.chat_template);
  if (chat.ok()) m->chat_ = std::make_unique<ChatTemplate>(*chat);
  else if (!opts.chat_template.empty()) return chat.status();
  return Status::Ok();
}

Result<std::shared_ptr<const Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  std::shared_ptr<Model> m(new Model());
  m->path_ = path;
  ModelLoader loader;
  try {
    if (IsDirectory(path)) {
      RETURN_IF_ERROR(loader.LoadHf(path, options, m.get()));
    } else {
      if (!PathExists(path)) return NotFoundError("model file '" + path + "' does not exist (hint: `attune model fetch` downloads the default model)");
      RETURN_IF_ERROR(loader.LoadGguf(path, options, m.get()));
    }
  } catch (const nlohmann::json::exception& e) {
    // A config.json field of the wrong type: bad input, not a bug.
    return InvalidArgumentError("model '" + path + "': config.json has a field of the wrong type (" + e.what() + ")");
  } catch (const std::exception& e) {
    return InternalError("loading '" + path + "': " + e.what());
  }
  RETURN_IF_ERROR(CheckLoadedConfig(m->config(), m->tokenizer(), path));
  return std::shared_ptr<const Model>(std::move(m));
}

int64_t Model::parameter_count() const {
  int64_t n = embed_.numel() + out_norm_.numel();
  if (!config_.tied_embeddings) n += output_.numel();
  for (const auto& L : layers_) {
    n += L.attn_norm.numel() + L.ffn_norm.numel();
    for (const auto& p : L.proj) n += p.numel();
    if (L.q_bias.defined()) n += L.q_bias.numel() + L.k_bias.numel() + L.v_bias.numel();
  }
  return n;
}

std::shared_ptr<const Model> Model::WithMergedAdapter(const LoraWeights& lora) const {
  std::shared_ptr<Model> m(new Model());
  m->config_ = config_;
  m->tokenizer_ = tokenizer_;
  m->chat_ = chat_;
  m->path_ = path_;
  m->fingerprint_ = fingerprint_;  // the base it was derived from
  m->embed_ = embed_;
  m->out_norm_ = out_norm_;
  m->output_ = output_;
  m->rope_cos_ = rope_cos_;
  m->rope_sin_ = rope_sin_;
  m->layers_ = layers_;
  at::NoGradGuard ng;
  for (size_t l = 0; l < m->layers_.size() && l < lora.layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const auto& p = lora.layers[l][size_t(t)];
      if (!p.a.defined()) continue;
      at::Tensor w = layers_[l].proj[size_t(t)].Dequantized();
      m->layers_[l].proj[size_t(t)] = LinearWeight(at::addmm(w, p.b, p.a, /*beta=*/1.0, /*alpha=*/lora.scale));
    }
  }
  return m;
}

KvCache Model::NewCache(int64_t capacity) const {
  KvCache c;
  c.capacity = capacity;
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    c.k.push_back(at::zeros({1, config_.n_kv_heads, capacity, config_.head_dim}, at::kFloat));
    c.v.push_back(at::zeros({1, config_.n_kv_heads, capacity, config_.head_dim}, at::kFloat));
  }
  return c;
}

}  // namespace attune::runtime
