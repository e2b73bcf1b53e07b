#include "attune/runtime/engine.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model.h"

namespace attune::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Bytes at the end of `s` that start an incomplete UTF-8 sequence.
size_t IncompleteUtf8Tail(const std::string& s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    unsigned char c = s[s.size() - back];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

// Tracks generated text, stop strings and what may be streamed yet.
class TextStream {
 public:
  TextStream(const std::vector<std::string>& stop, const TextCallback& cb) : stop_(stop), cb_(cb) {}

  // Appends bytes; returns false when a stop string was hit or the callback
  // asked to stop (see stopped()/cancelled()).
  bool Append(const std::string& bytes) {
    all_ += bytes;
    for (const auto& s : stop_) {
      if (s.empty()) continue;
      size_t from = emitted_ > s.size() ? emitted_ - s.size() : 0;
      size_t pos = all_.find(s, from);
      if (pos != std::string::npos) {
        all_.resize(pos);
        Emit(all_.size());
        stopped_ = true;
        return false;
      }
    }
    size_t end = all_.size();
    for (const auto& s : stop_) {
      for (size_t k = std::min(s.size() - 1, all_.size()); k > 0; --k) {
        if (all_.compare(all_.size() - k, k, s, 0, k) == 0) {
          end = std::min(end, all_.size() - k);
          break;
        }
      }
    }
    end -= IncompleteUtf8Tail(all_.substr(0, end));
    return Emit(end);
  }

  void Flush() { Emit(all_.size()); }
  const std::string& text() const { return all_; }
  bool stopped() const { return stopped_; }
  bool cancelled() const { return cancelled_; }

 private:
  bool Emit(size_t end) {
    if (end <= emitted_) return true;
    std::string_view chunk(all_.data() + emitted_, end - emitted_);
    emitted_ = end;
    if (cb_ && !cb_(chunk)) {
      cancelled_ = true;
      return false;
    }
    return true;
  }
  const std::vector<std::string>& stop_;
  const TextCallback& cb_;
  std::string all_;
  size_t emitted_ = 0;
  bool stopped_ = false, cancelled_ = false;
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.model_path.empty()) return InvalidArgumentError("no model path given");
  ConfigureThreads(options.torch_threads, options.blas_threads);
  LoadOptions lo;
  lo.chat_template = options.chat_template;
  ASSIGN_OR_RETURN(auto model, Model::Load(options.model_path, lo));
  return std::unique_ptr<Engine>(new Engine(std::move(model), options.merged_adapters));
}

struct Engine::Slot {
  AdapterSlot slot;
};

Engine::Engine(std::shared_ptr<const Model> model, bool merged)
    : model_(std::move(model)), merged_(merged), slot_(std::make_unique<Slot>()) {}
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
  const ChatTemplate* t = chat_template();
  if (!t) return FailedPreconditionError("the model has no recognised chat template; choose one with --chat-template chatml|llama3");
  return Complete(t->Render(messages, /*add_generation_prompt=*/true), options, on_text);
}

Result<GenerateResult> Engine::Complete(const std::string& prompt, const GenerateOptions& options,
                                        const TextCallback& on_text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer().Encode(prompt));
  if (tokenizer().add_bos() && tokenizer().bos_id() && (ids.empty() || ids[0] != *tokenizer().bos_id())) {
    ids.insert(ids.begin(), *tokenizer().bos_id());
  }
  return GenerateIds(ids, options, on_text);
}

Result<GenerateResult> Engine::GenerateIds(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                           const TextCallback& on_text) const {
  const ModelConfig& c = config();
  if (prompt.empty()) return InvalidArgumentError("the prompt is empty");
  if (options.max_tokens < 0) return InvalidArgumentError("max tokens must be >= 0");
  if (options.sampling.temperature < 0 || options.sampling.top_p <= 0 || options.sampling.top_p > 1 ||
      options.sampling.repetition_penalty <= 0) {
    return InvalidArgumentError("sampling options out of range (temperature >= 0, 0 < top-p <= 1, repetition penalty > 0)");
  }
  if (int64_t(prompt.size()) >= c.context_length) {
    return FailedPreconditionError("the prompt has " + std::to_string(prompt.size()) + " tokens, the model's context holds " +
                                   std::to_string(c.context_length) + " (shorten the prompt or the conversation)");
  }
  for (int32_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) return InvalidArgumentError("prompt token id " + std::to_string(id) + " is outside the vocabulary");
  }
  std::unordered_set<int32_t> eos;
  if (options.stop_at_eos) {
    if (model_->tokenizer() && tokenizer().eos_id()) eos.insert(*tokenizer().eos_id());
    if (chat_template() && model_->tokenizer()) {
      if (auto id = tokenizer().TokenToId(chat_template()->end_of_turn())) eos.insert(*id);
    }
  }
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());
  // Pin one adapter snapshot for the whole generation.
  std::shared_ptr<const ActiveAdapter> adapter = options.adapter;
  if (!adapter && options.use_active_adapter) adapter = slot_->slot.Pin();
  // Merged mode serves a model with the adapter folded in, with no LoRA term.
  const Model& model = adapter && adapter->merged ? *adapter->merged : *model_;
  const LoraWeights* lora = adapter && !adapter->merged ? &adapter->weights : nullptr;
  result.adapter_version = adapter ? adapter->version : "";
  const int64_t capacity = std::min<int64_t>(c.context_length, int64_t(prompt.size()) + options.max_tokens + 1);
  TextStream stream(options.stop, on_text);
  Sampler sampler(options.sampling);
  std::vector<int32_t> history = prompt;
  try {
    at::NoGradGuard no_grad;
    KvCache cache = model.NewCache(capacity);
    auto t0 = Clock::now();
    at::Tensor input = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong).view({1, -1});
    ForwardOptions fo;
    fo.last_logits_only = true;
    at::Tensor logits = Forward(model, lora, input, &cache, fo);
    auto t1 = Clock::now();
    result.prefill_seconds = Seconds(t0, t1);
    result.finish_reason = "length";
    for (int step = 0; step < options.max_tokens; ++step) {
      at::Tensor row = logits.reshape({-1}).contiguous();
      if (!at::isfinite(row).all().item<bool>()) {
        result.finish_reason = "non_finite";
        break;
      }
      int32_t next = sampler.Sample(row.data_ptr<float>(), c.vocab_size, history);
      if (eos.count(next)) {
        result.finish_reason = "stop";
        break;
      }
      result.tokens.push_back(next);
      history.push_back(next);
      if (model_->tokenizer() && !stream.Append(tokenizer().TokenBytes(next))) {
        result.finish_reason = stream.cancelled() ? "cancelled" : "stop";
        break;
      }
      if (step + 1 == options.max_tokens) break;
      if (cache.length >= cache.capacity) {
        result.finish_reason = "context";
        break;
      }
      logits = Forward(model, lora, at::full({1, 1}, int64_t(next), at::kLong), &cache, fo);
    }
    result.decode_seconds = Seconds(t1, Clock::now());
  } catch (const c10::Error& e) {
    return InternalError(std::string("generation failed in LibTorch: ") + e.what_without_backtrace());
  }
  if (!stream.stopped() && !stream.cancelled()) stream.Flush();
  result.text = stream.text();
  return result;
}

}  // namespace attune::runtime
