#include "attune/runtime/engine.h"

#include <ATen/ATen.h>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/generate.h"
#include "attune/runtime/model.h"
#include "attune/runtime/prompt_cache.h"
#include "attune/runtime/scope.h"

namespace attune::runtime {

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.model_path.empty()) return InvalidArgumentError("no model path given");
  ConfigureThreads(options.torch_threads, options.blas_threads);
  LoadOptions lo;
  lo.chat_template = options.chat_template;
  lo.weights = options.weights;
  ASSIGN_OR_RETURN(auto model, Model::Load(options.model_path, lo));
  return std::unique_ptr<Engine>(new Engine(std::move(model), options.merged_adapters, options.prompt_cache_bytes));
}

struct Engine::Slot {
  AdapterSlot slot;
  std::unique_ptr<PromptCache> prompts;  // null: disabled
};

Engine::Engine(std::shared_ptr<const Model> model, bool merged, size_t prompt_cache_bytes)
    : model_(std::move(model)), merged_(merged), slot_(std::make_unique<Slot>()) {
  if (prompt_cache_bytes > 0) {
    PromptCacheOptions o;
    o.max_bytes = prompt_cache_bytes;
    slot_->prompts = std::make_unique<PromptCache>(o);
  }
}

PromptCacheStats Engine::prompt_cache_stats() const {
  return slot_->prompts ? slot_->prompts->stats() : PromptCacheStats{};
}
Engine::~Engine() = default;

Result<std::shared_ptr<const ActiveAdapter>> Engine::PrepareAdapter(const adapters::Adapter& adapter,
                                                                    const std::string& version) const {
  try {
    ASSIGN_OR_RETURN(auto snap, MakeActiveAdapter(*model_, adapter, version));
    if (!merged_) return snap;
    auto merged = std::make_shared<ActiveAdapter>(*snap);
    merged->merged = model_->WithMergedAdapter(snap->weights);
    return std::shared_ptr<const ActiveAdapter>(std::move(merged));
  } catch (const c10::Error& e) {
    return InvalidArgumentError(std::string("adapter '") + version + "' could not be converted: " + e.what_without_backtrace());
  }
}

Status Engine::SetAdapter(const adapters::Adapter& adapter, const std::string& version) {
  ASSIGN_OR_RETURN(auto snap, PrepareAdapter(adapter, version));
  auto old = slot_->slot.Publish(std::move(snap));
  return Status::Ok();  // `old` is released here, outside the slot's lock
}

void Engine::ClearAdapter() { slot_->slot.Publish(nullptr); }

std::string Engine::adapter_version() const {
  auto s = slot_->slot.Pin();
  return s ? s->version : "";
}

const ModelConfig& Engine::config() const { return model_->config(); }
const Tokenizer& Engine::tokenizer() const { return *model_->tokenizer(); }
const ChatTemplate* Engine::chat_template() const { return model_->chat_template(); }
int64_t Engine::parameter_count() const { return model_->parameter_count(); }
const std::string& Engine::fingerprint() const { return model_->fingerprint(); }

Result<GenerateResult> Engine::Chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                                    const TextCallback& on_text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptIds(*model_, messages));
  return GenerateScoped(ids, options, on_text, LastUserMessage(messages));
}

Result<GenerateResult> Engine::Complete(const std::string& prompt, const GenerateOptions& options,
                                        const TextCallback& on_text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, TextIds(*model_, prompt));
  return GenerateScoped(ids, options, on_text, &prompt);
}

Result<GenerateResult> Engine::GenerateIds(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                           const TextCallback& on_text) const {
  return GenerateScoped(prompt, options, on_text, nullptr);
}

Result<GenerateResult> Engine::GenerateScoped(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                              const TextCallback& on_text, const std::string* scope_text) const {
  // Pin one adapter snapshot for the whole generation.
  std::shared_ptr<const ActiveAdapter> adapter = options.adapter;
  if (!adapter && options.use_active_adapter) adapter = slot_->slot.Pin();
  // A scoped adapter leaves what it was not trained about to the base.
  std::string out_of_scope;
  if (adapter && scope_text && !adapter->scope.empty() && !InScope(*model_, adapter->scope, *scope_text)) {
    out_of_scope = adapter->version;
    adapter = nullptr;
  }
  // Merged mode serves a model with the adapter folded in, with no LoRA term.
  const Model& model = adapter && adapter->merged ? *adapter->merged : *model_;
  const LoraWeights* lora = adapter && !adapter->merged ? &adapter->weights : nullptr;
  // The cache is keyed by this exact snapshot: what one adapter computed
  // never serves another.
  PromptReuse reuse{slot_->prompts.get(), adapter};
  ASSIGN_OR_RETURN(GenerateResult result,
                   Generate(model, lora, prompt, options, on_text, slot_->prompts ? &reuse : nullptr));
  result.adapter_version = adapter ? adapter->version : "";
  result.out_of_scope_version = out_of_scope;
  return result;
}

}  // namespace attune::runtime
