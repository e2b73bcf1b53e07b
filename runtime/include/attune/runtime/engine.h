// Engine: the application-facing runtime API (no LibTorch types).
//
// Owns a loaded model and runs generations: chat-template rendering,
// tokenization, prefill, decode with a KV cache, sampling, stop conditions,
// streaming. Many generations may run at once on one Engine (each has its own
// cache); the model is shared and never copied.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/sampler.h"
#include "attune/runtime/tokenizer.h"

namespace attune::adapters {
struct Adapter;
}

namespace attune::runtime {

class Model;
struct ActiveAdapter;

struct EngineOptions {
  std::string model_path;     // GGUF file or Hugging Face directory. Required.
  std::string chat_template;  // "chatml" | "llama3" override. Default: "" (detect)
  // LibTorch intra-op threads. Default: 1 (BLAS does the parallel work; more
  // oversubscribes small machines, see docs/runtime.md).
  int torch_threads = 1;
  // OpenBLAS threads. Default: 0 (OpenBLAS's own default: all cores).
  int blas_threads = 0;
  // Fold each published adapter into a copy of the adapted fp32 weights
  // (Model::WithMergedAdapter): decoding runs at base speed, a swap costs the
  // fold and the copy's memory. Default: false (unmerged: swap = publish).
  bool merged_adapters = false;
  // Base weights quantized in memory (the file's blocks) or fp32.
  // Default: kQuantized.
  WeightStorage weights = WeightStorage::kQuantized;
  // Keys and values of recent prompts and replies kept for conversations
  // that resend their history (prompt_cache.h); 0 disables.
  // Default: 64 MiB
  size_t prompt_cache_bytes = size_t{64} << 20;
};

struct GenerateOptions {
  int max_tokens = 256;              // Default: 256
  SamplingOptions sampling;          // Default: greedy
  std::vector<std::string> stop;     // extra stop strings. Default: none
  // Stop at the tokenizer's EOS and the chat template's end-of-turn token.
  bool stop_at_eos = true;           // Default: true
  // Which adapter serves: the slot's current one (pinned at the start), or
  // none (the base model). Default: true
  bool use_active_adapter = true;
  // Serve with this snapshot instead of the slot's. Default: null
  std::shared_ptr<const ActiveAdapter> adapter;
};

struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;  // generated ids
  int prompt_tokens = 0;
  // Of prompt_tokens, how many were restored from the prompt cache instead
  // of computed.
  int cached_prompt_tokens = 0;
  // "stop" (EOS, end of turn or a stop string), "length" (max_tokens),
  // "context" (the model's context is full), "cancelled" (callback said so),
  // "non_finite" (the logits held NaN or Inf: the adapter is broken).
  std::string finish_reason;
  // The adapter version that produced every token; "" for the base model.
  std::string adapter_version;
  // The version of a scoped adapter that left this request to the base
  // model (runtime/scope.h); "" otherwise. adapter_version is "" then.
  std::string out_of_scope_version;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Receives text as it is produced, in whole UTF-8 characters, never
// including (a prefix of) a stop string. Return false to stop.
using TextCallback = std::function<bool(std::string_view)>;

struct PromptCacheStats;

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  ~Engine();

  // Renders `messages` with the model's chat template and generates the
  // assistant's reply. A scoped adapter (runtime/scope.h) answers only when
  // the last user message is in its scope; the base model answers the
  // rest (GenerateResult::out_of_scope_version). FailedPrecondition when the prompt does not fit the
  // context; InvalidArgument for bad options.
  Result<GenerateResult> Chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                              const TextCallback& on_text = nullptr) const;
  // Generates a continuation of raw prompt text (special tokens parsed); a
  // scoped adapter judges the whole text.
  Result<GenerateResult> Complete(const std::string& prompt, const GenerateOptions& options,
                                  const TextCallback& on_text = nullptr) const;
  // Generates from prompt token ids. There is no text to judge: a scoped
  // adapter answers.
  Result<GenerateResult> GenerateIds(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                     const TextCallback& on_text = nullptr) const;

  // Installs `adapter` as the serving adapter (checked against the base
  // model: FailedPrecondition names the tensor). Generations already running
  // keep their snapshot; the next ones use this one. On failure the slot is
  // unchanged.
  Status SetAdapter(const adapters::Adapter& adapter, const std::string& version);
  // Serve the base model from the next generation on.
  void ClearAdapter();
  // The version in the slot now ("" when none).
  std::string adapter_version() const;
  // Builds a snapshot without publishing it (for GenerateOptions::adapter).
  Result<std::shared_ptr<const ActiveAdapter>> PrepareAdapter(const adapters::Adapter& adapter,
                                                              const std::string& version) const;

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  // nullptr when the model has no recognisable chat template.
  const ChatTemplate* chat_template() const;
  int64_t parameter_count() const;
  const std::string& fingerprint() const;
  std::shared_ptr<const Model> model() const { return model_; }
  // Hits and reused positions of the prompt cache (prompt_cache.h).
  PromptCacheStats prompt_cache_stats() const;

 private:
  struct Slot;
  Engine(std::shared_ptr<const Model> model, bool merged, size_t prompt_cache_bytes);
  // GenerateIds with `scope_text` (null: none) judged by a scoped adapter.
  Result<GenerateResult> GenerateScoped(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                        const TextCallback& on_text, const std::string* scope_text) const;
  std::shared_ptr<const Model> model_;
  bool merged_ = false;
  std::unique_ptr<Slot> slot_;
};

}  // namespace attune::runtime
