#include "runtime/src/gguf_model.h"

#include <cmath>
#include <cstring>

#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {

Result<ModelConfig> ReadGgufConfig(const GgufFile& g, const std::string& path) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch_name, g.GetString("general.architecture"));
  if (c.arch_name == "llama") c.arch = Architecture::kLlama;
  else if (c.arch_name == "mistral") c.arch = Architecture::kMistral;
  else if (c.arch_name == "qwen2") c.arch = Architecture::kQwen2;
  else return UnsupportedError("GGUF file '" + path + "': architecture '" + c.arch_name + "' is not supported (llama, mistral, qwen2)");
  const std::string a = c.arch_name + ".";
  c.name = g.Find("general.name") && g.Find("general.name")->as_string() ? *g.Find("general.name")->as_string() : c.arch_name;
  ASSIGN_OR_RETURN(c.hidden, g.GetInt(a + "embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate, g.GetInt(a + "feed_forward_length"));
  ASSIGN_OR_RETURN(c.n_layers, g.GetInt(a + "block_count"));
  ASSIGN_OR_RETURN(c.n_heads, g.GetInt(a + "attention.head_count"));
  ASSIGN_OR_RETURN(c.n_kv_heads, g.GetIntOr(a + "attention.head_count_kv", c.n_heads));
  ASSIGN_OR_RETURN(c.context_length, g.GetInt(a + "context_length"));
  ASSIGN_OR_RETURN(c.rope_theta, g.GetFloatOr(a + "rope.freq_base", 10000.0));
  ASSIGN_OR_RETURN(c.rms_eps, g.GetFloat(a + "attention.layer_norm_rms_epsilon"));
  if (c.n_heads <= 0) return DataLossError("GGUF file '" + path + "': " + a + "attention.head_count must be positive");
  ASSIGN_OR_RETURN(c.head_dim, g.GetIntOr(a + "attention.key_length", c.hidden / c.n_heads));
  if (g.Find(a + "rope.scaling.type")) {
    ASSIGN_OR_RETURN(std::string st, g.GetString(a + "rope.scaling.type"));
    if (st == "linear") {
      ASSIGN_OR_RETURN(c.rope_linear_scale, g.GetFloat(a + "rope.scaling.factor"));
    } else if (st != "none") {
      return UnsupportedError("GGUF file '" + path + "': rope scaling '" + st + "' is not supported (none, linear)");
    }
  }
  // Llama 3.1/3.2 GGUFs carry their RoPE frequency factors as a tensor
  // (sometimes without a rope.scaling.type key); ignoring it would give
  // silently wrong logits, so such files are refused.
  if (g.FindTensor("rope_freqs.weight")) {
    return UnsupportedError("GGUF file '" + path + "': tensor 'rope_freqs.weight' (Llama-3.1 style RoPE scaling) is not supported");
  }
  if (const GgufValue* sw = g.Find(a + "attention.sliding_window"); sw && sw->is_integer() && sw->as_int() > 0) {
    if (sw->as_int() < c.context_length) {
      return UnsupportedError("GGUF file '" + path + "': sliding-window attention (" + a + "attention.sliding_window = " +
                              std::to_string(sw->as_int()) + ", below the context length " + std::to_string(c.context_length) +
                              ") is not supported");
    }
  }
  const GgufTensorInfo* emb = g.FindTensor("token_embd.weight");
  if (!emb) return DataLossError("GGUF file '" + path + "': tensor 'token_embd.weight' is missing");
  c.vocab_size = emb->dims.size() == 2 ? int64_t(emb->dims[1]) : 0;
  c.qkv_bias = g.FindTensor("blk.0.attn_q.bias") != nullptr;
  c.tied_embeddings = g.FindTensor("output.weight") == nullptr;  // as llama.cpp assumes
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0 || c.n_layers <= 0 || c.n_layers > 1024) {
    return DataLossError("GGUF file '" + path + "': inconsistent attention hyper-parameters (heads " + std::to_string(c.n_heads) +
                         ", kv heads " + std::to_string(c.n_kv_heads) + ", head dim " + std::to_string(c.head_dim) + ")");
  }
  if (c.context_length <= 0 || c.context_length > (1 << 20)) return DataLossError("GGUF file '" + path + "': " + a + "context_length is out of range");
  return c;
}

Result<RawTensor> FetchGgufTensor(const GgufFile& g, const std::string& path, const std::string& name,
                                  const std::vector<int64_t>& shape, bool optional, Sha256* fp) {
  const GgufTensorInfo* t = g.FindTensor(name);
  if (!t) {
    if (optional) return RawTensor{};
    return DataLossError("GGUF file '" + path + "': tensor '" + name + "' is missing");
  }
  std::vector<int64_t> got(t->dims.rbegin(), t->dims.rend());
  if (got != shape) {
    std::string e, s;
    for (auto d : shape) e += std::to_string(d) + ",";
    for (auto d : got) s += std::to_string(d) + ",";
    return DataLossError("GGUF file '" + path + "': tensor '" + name + "' has shape [" + s + "], the metadata implies [" + e + "]");
  }
  fp->Update(name);
  fp->Update(t->data, size_t(t->n_bytes));
  return RawTensor{name, t->type, t->data, shape};
}

std::vector<TensorSpec> ModelTensors(const ModelConfig& c, bool gguf_names) {
  using Role = TensorSpec::Role;
  const int64_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
  struct Proj {
    const char* hf;  // within the layer
    const char* gg;  // within the block
    int64_t out, in;
  };
  const std::array<Proj, kNumLoraTargets> projs = {{
      {"self_attn.q_proj.weight", "attn_q.weight", q_out, c.hidden},
      {"self_attn.k_proj.weight", "attn_k.weight", kv_out, c.hidden},
      {"self_attn.v_proj.weight", "attn_v.weight", kv_out, c.hidden},
      {"self_attn.o_proj.weight", "attn_output.weight", c.hidden, q_out},
      {"mlp.gate_proj.weight", "ffn_gate.weight", c.intermediate, c.hidden},
      {"mlp.up_proj.weight", "ffn_up.weight", c.intermediate, c.hidden},
      {"mlp.down_proj.weight", "ffn_down.weight", c.hidden, c.intermediate},
  }};
  std::vector<TensorSpec> out;
  auto add = [&](Role role, int layer, int target, const char* hf, const char* gg, std::vector<int64_t> shape,
                 bool optional = false) {
    TensorSpec t;
    t.role = role;
    t.layer = layer;
    t.target = target;
    t.name = gguf_names ? gg : hf;
    if (layer >= 0) t.name = (gguf_names ? "blk." : "model.layers.") + std::to_string(layer) + "." + t.name;
    t.shape = std::move(shape);
    t.optional = optional;
    t.unpermute_heads = gguf_names && target >= 0 ? GgufPermutedHeads(c, target) : 0;
    out.push_back(std::move(t));
  };
  add(Role::kEmbed, -1, -1, "model.embed_tokens.weight", "token_embd.weight", {c.vocab_size, c.hidden});
  add(Role::kOutputNorm, -1, -1, "model.norm.weight", "output_norm.weight", {c.hidden});
  add(Role::kOutput, -1, -1, "lm_head.weight", "output.weight", {c.vocab_size, c.hidden}, /*optional=*/true);
  for (int i = 0; i < int(c.n_layers); ++i) {
    add(Role::kAttnNorm, i, -1, "input_layernorm.weight", "attn_norm.weight", {c.hidden});
    add(Role::kFfnNorm, i, -1, "post_attention_layernorm.weight", "ffn_norm.weight", {c.hidden});
    for (int t = 0; t < kNumLoraTargets; ++t) {
      add(Role::kProj, i, t, projs[size_t(t)].hf, projs[size_t(t)].gg, {projs[size_t(t)].out, projs[size_t(t)].in});
    }
    if (c.qkv_bias) {
      add(Role::kBias, i, kQ, "self_attn.q_proj.bias", "attn_q.bias", {q_out});
      add(Role::kBias, i, kK, "self_attn.k_proj.bias", "attn_k.bias", {kv_out});
      add(Role::kBias, i, kV, "self_attn.v_proj.bias", "attn_v.bias", {kv_out});
    }
  }
  return out;
}

int64_t GgufPermutedHeads(const ModelConfig& c, int target) {
  if (c.arch == Architecture::kQwen2) return 0;
  return target == kQ ? c.n_heads : target == kK ? c.n_kv_heads : 0;
}

int64_t UnpermutedSource(int64_t row, int64_t rows, int64_t n_head) {
  const int64_t per_head = rows / n_head, half = per_head / 2;
  const int64_t h = row / per_head, b = (row % per_head) / half, a = row % half;
  return h * per_head + a * 2 + b;
}

Result<QuantMatrix> ToQuantMatrix(const RawTensor& t, int64_t unpermute_heads, const std::shared_ptr<const void>& owner,
                                  const std::string& file) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  auto traits = GetGgmlTypeTraits(uint32_t(t.type));
  if (!traits || cols % int64_t(traits->block_elems) != 0) {
    return DataLossError("'" + file + "': tensor '" + t.name + "' has rows of " + std::to_string(cols) +
                         " elements, not a multiple of the " + std::string(traits ? traits->name : "?") + " block size");
  }
  QuantMatrix q;
  q.type = t.type;
  q.rows = rows;
  q.cols = cols;
  q.row_bytes = GgmlRowBytes(t.type, size_t(cols));
  const bool misaligned = t.type == GgmlType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0;
  if (unpermute_heads > 0 || misaligned) {
    auto buf = std::make_shared<std::vector<uint8_t>>(q.row_bytes * size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t src = unpermute_heads > 0 ? UnpermutedSource(r, rows, unpermute_heads) : r;
      std::memcpy(buf->data() + size_t(r) * q.row_bytes, t.data + size_t(src) * q.row_bytes, q.row_bytes);
    }
    q.data = buf->data();
    q.owner = buf;
  } else {
    q.data = t.data;
    q.owner = owner;
  }
  return q;
}

std::vector<float> ToFloats(const RawTensor& t, int64_t unpermute_heads) {
  const int64_t row = t.shape.back();
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  const int64_t rows = n / row;
  std::vector<float> out(static_cast<size_t>(n));
  kernels::DequantizeRows(t.type, t.data, GgmlRowBytes(t.type, size_t(row)), rows, row, out.data());
  if (unpermute_heads <= 0) return out;
  // A vector is un-permuted as a matrix of one column.
  const int64_t r = t.shape.size() == 1 ? n : rows, width = t.shape.size() == 1 ? 1 : row;
  std::vector<float> un(out.size());
  for (int64_t i = 0; i < r; ++i) {
    std::memcpy(un.data() + i * width, out.data() + UnpermutedSource(i, r, unpermute_heads) * width, size_t(width) * sizeof(float));
  }
  return un;
}

void RopeTables(const ModelConfig& c, std::vector<float>* cos, std::vector<float>* sin) {
  const int64_t half = c.head_dim / 2;
  const int64_t max_pos = std::max<int64_t>(c.context_length, 1);
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv[size_t(i)] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
  cos->resize(size_t(max_pos * half));
  sin->resize(size_t(max_pos * half));
  for (int64_t p = 0; p < max_pos; ++p) {
    const double pos = double(p) / c.rope_linear_scale;
    for (int64_t i = 0; i < half; ++i) {
      const double f = pos * inv[size_t(i)];
      (*cos)[size_t(p * half + i)] = float(std::cos(f));
      (*sin)[size_t(p * half + i)] = float(std::sin(f));
    }
  }
}

Status ReadGgufTextSide(const GgufFile& g, const std::string& path, const std::string& chat_override, bool allow_missing_tokenizer,
                        std::shared_ptr<const Tokenizer>* tokenizer, std::shared_ptr<const ChatTemplate>* chat) {
  if (g.Find("tokenizer.ggml.model")) {
    ASSIGN_OR_RETURN(*tokenizer, Tokenizer::FromGguf(g));
  } else if (!allow_missing_tokenizer) {
    return InvalidArgumentError("GGUF file '" + path + "' has no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
  }
  std::string jinja;
  if (g.Find("tokenizer.chat_template")) {
    ASSIGN_OR_RETURN(jinja, g.GetString("tokenizer.chat_template"));
  }
  auto detected = ChatTemplate::Detect(jinja, chat_override);
  if (detected.ok()) *chat = std::make_shared<ChatTemplate>(*detected);
  else if (!chat_override.empty()) return detected.status();
  return Status::Ok();
}

Status CheckLoadedConfig(const ModelConfig& c, const Tokenizer* tokenizer, const std::string& path) {
  // A tokenizer that can produce ids the embedding has no row for would make
  // generation read past the matrix; such a pair is refused at load.
  if (tokenizer && tokenizer->vocab_size() > c.vocab_size) {
    return InvalidArgumentError("model '" + path + "': the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                " tokens but the embedding only " + std::to_string(c.vocab_size) +
                                " rows (hint: tokenizer and weights of different models?)");
  }
  // NaN passes no comparison: these are written so that it fails them.
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) {
    return InvalidArgumentError("model '" + path + "': the RMS norm epsilon is " + std::to_string(c.rms_eps) +
                                "; it must be a number in (0, 1)");
  }
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta))) {
    return InvalidArgumentError("model '" + path + "': the RoPE base frequency is " + std::to_string(c.rope_theta) +
                                "; it must be a finite number > 0");
  }
  return Status::Ok();
}

}  // namespace attune::runtime
