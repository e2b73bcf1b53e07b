#include "attune/runtime/lean_engine.h"

#include <sys/stat.h>

#include <chrono>

#include "attune/adapters/adapter.h"
#include "attune/adapters/snapshot.h"
#include "attune/core/file.h"
#include "attune/runtime/plain_weights.h"
#include "runtime/src/decode.h"
#include "runtime/src/decode_loop.h"
#include "runtime/src/gguf_model.h"
#include "runtime/src/kernels/thread_pool.h"

namespace attune::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct LeanLayer {
  std::vector<float> attn_norm, ffn_norm, q_bias, k_bias, v_bias;
  std::array<QuantMatrix, kNumLoraTargets> proj;
};

// An installed adapter: its buffers and the view the forward pass reads.
struct LeanAdapter {
  std::string version;
  std::shared_ptr<const adapters::Adapter> adapter;
  PlainLora lora;
};

// A KV cache of `capacity` positions over one buffer.
struct LeanCache {
  std::vector<float> kv;
  PlainCache view;
  LeanCache(const ModelConfig& c, int64_t capacity) {
    const size_t per_layer = size_t(c.n_kv_heads * capacity * c.head_dim);
    kv.resize(2 * per_layer * size_t(c.n_layers));
    view.capacity = capacity;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      view.k.push_back(kv.data() + size_t(2 * l) * per_layer);
      view.v.push_back(kv.data() + size_t(2 * l + 1) * per_layer);
    }
  }
};

}  // namespace

struct LeanEngine::Impl {
  std::string path;
  std::shared_ptr<const GgufFile> file;  // the weights point into its mapping
  ModelConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const ChatTemplate> chat;
  std::string fingerprint;
  QuantMatrix embed, output;
  std::vector<float> out_norm, rope_cos, rope_sin;
  std::vector<LeanLayer> layers;
  PlainWeights plain;  // views of the above
  adapters::SnapshotSlot<LeanAdapter> slot;  // the installed adapter

  Status Load(const LeanEngineOptions& o);
  // Whether a scoped adapter answers `text` (runtime/scope.h's rule over
  // the lean forward pass); a text that cannot be judged is out of scope.
  bool InScope(const adapters::Scope& scope, const std::string& text) const;
  // scope_text: what a scoped adapter judges (nullptr: nothing; it answers).
  Result<GenerateResult> Generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                  const TextCallback& on_text, const std::string* scope_text) const;
};

Status LeanEngine::Impl::Load(const LeanEngineOptions& o) {
  path = o.model_path;
  ASSIGN_OR_RETURN(auto opened, GgufFile::Open(path));
  file = std::shared_ptr<const GgufFile>(std::move(opened));
  const GgufFile& g = *file;
  ASSIGN_OR_RETURN(config, ReadGgufConfig(g, path));
  const ModelConfig& c = config;
  // ModelTensors gives the order of the fetches, and with it the
  // fingerprint: the same as Model::Load's.
  Sha256 fp;
  auto fetch = [&](const std::string& name, const std::vector<int64_t>& shape, bool optional) {
    return FetchGgufTensor(g, path, name, shape, optional, &fp);
  };
  using Role = TensorSpec::Role;
  layers.resize(size_t(c.n_layers));
  for (const TensorSpec& spec : ModelTensors(c, /*gguf_names=*/true)) {
    ASSIGN_OR_RETURN(RawTensor t, fetch(spec.name, spec.shape, spec.optional));
    LeanLayer* L = spec.layer >= 0 ? &layers[size_t(spec.layer)] : nullptr;
    switch (spec.role) {
      case Role::kEmbed: {
        ASSIGN_OR_RETURN(embed, ToQuantMatrix(t, 0, file, path));
        break;
      }
      case Role::kOutputNorm: out_norm = ToFloats(t); break;
      case Role::kOutput: {
        if (t.present()) {
          ASSIGN_OR_RETURN(output, ToQuantMatrix(t, 0, file, path));
        } else {
          output = embed;
        }
        break;
      }
      case Role::kAttnNorm: L->attn_norm = ToFloats(t); break;
      case Role::kFfnNorm: L->ffn_norm = ToFloats(t); break;
      case Role::kProj: {
        ASSIGN_OR_RETURN(L->proj[size_t(spec.target)], ToQuantMatrix(t, spec.unpermute_heads, file, path));
        break;
      }
      case Role::kBias: {
        (spec.target == kQ ? L->q_bias : spec.target == kK ? L->k_bias : L->v_bias) = ToFloats(t, spec.unpermute_heads);
        break;
      }
    }
  }
  fingerprint = fp.FinishHex();
  RopeTables(c, &rope_cos, &rope_sin);
  RETURN_IF_ERROR(ReadGgufTextSide(g, path, o.chat_template, /*allow_missing_tokenizer=*/false, &tokenizer, &chat));
  RETURN_IF_ERROR(CheckLoadedConfig(c, tokenizer.get(), path));

  plain.config = c;
  plain.embed = &embed;
  plain.output = &output;
  plain.out_norm = out_norm.data();
  plain.rope_cos = rope_cos.data();
  plain.rope_sin = rope_sin.data();
  plain.layers.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const LeanLayer& L = layers[i];
    PlainLayer& P = plain.layers[i];
    P.attn_norm = L.attn_norm.data();
    P.ffn_norm = L.ffn_norm.data();
    for (int t = 0; t < kNumLoraTargets; ++t) P.proj[size_t(t)] = &L.proj[size_t(t)];
    if (c.qkv_bias) {
      P.q_bias = L.q_bias.data();
      P.k_bias = L.k_bias.data();
      P.v_bias = L.v_bias.data();
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<LeanEngine>> LeanEngine::Open(const LeanEngineOptions& options) {
  if (options.model_path.empty()) return InvalidArgumentError("no model path given");
  struct stat st;
  if (::stat(options.model_path.c_str(), &st) != 0) {
    return NotFoundError("model file '" + options.model_path + "' does not exist (hint: `attune model fetch` downloads the default model)");
  }
  if (S_ISDIR(st.st_mode)) {
    return InvalidArgumentError("model '" + options.model_path +
                                "' is a directory: the LibTorch-free engine reads GGUF files only (use `attune generate` for "
                                "Hugging Face directories)");
  }
  if (options.threads > 0) kernels::ThreadPool::Default().set_active(options.threads);
  auto impl = std::make_unique<Impl>();
  try {
    RETURN_IF_ERROR(impl->Load(options));
  } catch (const std::exception& e) {
    return InternalError("loading '" + options.model_path + "': " + e.what());
  }
  return std::unique_ptr<LeanEngine>(new LeanEngine(std::move(impl)));
}

LeanEngine::LeanEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LeanEngine::~LeanEngine() = default;

const ModelConfig& LeanEngine::config() const { return impl_->config; }
const Tokenizer* LeanEngine::tokenizer() const { return impl_->tokenizer.get(); }
const ChatTemplate* LeanEngine::chat_template() const { return impl_->chat.get(); }
const std::string& LeanEngine::fingerprint() const { return impl_->fingerprint; }

int64_t LeanEngine::parameter_count() const {
  const ModelConfig& c = impl_->config;
  int64_t n = impl_->embed.rows * impl_->embed.cols + c.hidden;
  if (!c.tied_embeddings) n += impl_->output.rows * impl_->output.cols;
  for (const auto& L : impl_->layers) {
    n += 2 * c.hidden + int64_t(L.q_bias.size() + L.k_bias.size() + L.v_bias.size());
    for (const auto& p : L.proj) n += p.rows * p.cols;
  }
  return n;
}

adapters::BaseModelInfo LeanEngine::base_info() const {
  adapters::BaseModelInfo base;
  base.fingerprint = impl_->fingerprint;
  base.arch = impl_->config.arch_name;
  base.n_layers = impl_->config.n_layers;
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const QuantMatrix& p = impl_->layers.at(0).proj[size_t(t)];
    base.dims[size_t(t)] = {p.cols, p.rows};
  }
  return base;
}

Status LeanEngine::SetAdapter(const adapters::Adapter& adapter, const std::string& version) {
  RETURN_IF_ERROR(CheckAdapterFits(base_info(), adapter, version));
  auto a = std::make_shared<LeanAdapter>();
  a->version = version;
  a->adapter = std::make_shared<const adapters::Adapter>(adapter);
  a->lora = PlainLoraOf(*a->adapter);
  auto old = impl_->slot.Publish(std::move(a));
  return Status::Ok();  // `old` is released here, outside the slot's lock
}

void LeanEngine::ClearAdapter() { impl_->slot.Publish(nullptr); }
std::string LeanEngine::adapter_version() const {
  auto a = impl_->slot.Pin();
  return a ? a->version : "";
}

Result<GenerateResult> LeanEngine::Chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                                        const TextCallback& on_text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptIds(impl_->tokenizer.get(), impl_->chat.get(), messages));
  return impl_->Generate(ids, options, on_text, LastUserMessage(messages));
}

Result<GenerateResult> LeanEngine::Complete(const std::string& prompt, const GenerateOptions& options,
                                            const TextCallback& on_text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, TextIds(impl_->tokenizer.get(), prompt));
  return impl_->Generate(ids, options, on_text, &prompt);
}

Result<GenerateResult> LeanEngine::GenerateIds(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                               const TextCallback& on_text) const {
  return impl_->Generate(prompt, options, on_text, nullptr);
}

bool LeanEngine::Impl::InScope(const adapters::Scope& scope, const std::string& text) const {
  auto ids = TextIds(tokenizer.get(), text);
  if (!ids.ok() || ids->empty()) return false;  // cannot be judged: the base answers
  TruncateScopeIds(config, &*ids);
  LeanCache kv(config, int64_t(ids->size()));
  DecodeScratch scratch;
  const std::vector<float> x = MeanHiddenState(plain, ids->data(), int64_t(ids->size()), scope.layer, &kv.view, &scratch);
  return scope.Logit(x.data()) > 0;
}

Result<GenerateResult> LeanEngine::Impl::Generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                                  const TextCallback& on_text, const std::string* scope_text) const {
  if (options.adapter) return InvalidArgumentError("the LibTorch-free engine serves its installed adapter only (GenerateOptions::adapter)");
  const ModelConfig& c = config;
  RETURN_IF_ERROR(CheckGeneration(c, prompt, options));
  std::shared_ptr<const LeanAdapter> adapter = options.use_active_adapter ? slot.Pin() : nullptr;
  // A scoped adapter leaves what it was not trained about to the base, as
  // the Engine's does.
  std::string out_of_scope;
  if (adapter && scope_text && !adapter->adapter->scope.empty() && !InScope(adapter->adapter->scope, *scope_text)) {
    out_of_scope = adapter->version;
    adapter = nullptr;
  }
  const PlainLora* lora = adapter ? &adapter->lora : nullptr;
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());
  result.adapter_version = adapter ? adapter->version : "";
  result.out_of_scope_version = out_of_scope;
  LeanCache kv(c, GenerationCapacity(c, prompt, options));
  PlainCache& cache = kv.view;
  DecodeScratch scratch;
  std::vector<float> logits(size_t(c.vocab_size));
  auto t0 = Clock::now();
  ForwardRows(plain, lora, prompt.data(), int64_t(prompt.size()), &cache, logits.data(), &scratch);
  auto t1 = Clock::now();
  result.prefill_seconds = Seconds(t0, t1);
  std::vector<int32_t> history = prompt;
  auto step = [&](int32_t next, float* out) {
    if (cache.length >= cache.capacity) return false;
    ForwardRows(plain, lora, &next, 1, &cache, out, &scratch);
    return true;
  };
  SampleLoop(c, tokenizer.get(), chat.get(), options, on_text, logits.data(), step, &history, &result);
  result.decode_seconds = Seconds(t1, Clock::now());
  return result;
}

Result<std::vector<float>> LeanEngine::NextTokenLogits(const std::vector<int32_t>& ids) const {
  const ModelConfig& c = impl_->config;
  GenerateOptions o;
  o.max_tokens = 0;
  RETURN_IF_ERROR(CheckGeneration(c, ids, o));
  std::shared_ptr<const LeanAdapter> adapter = impl_->slot.Pin();
  LeanCache kv(c, int64_t(ids.size()));
  DecodeScratch scratch;
  std::vector<float> logits(size_t(c.vocab_size));
  ForwardRows(impl_->plain, adapter ? &adapter->lora : nullptr, ids.data(), int64_t(ids.size()), &kv.view, logits.data(), &scratch);
  return logits;
}

}  // namespace attune::runtime
