#include "runtime/src/decode_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/src/kernels/thread_pool.h"

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


// Decode threads that keep waiting for a worker which lost its core (another
// process took it) are worse than one thread: after two slow steps in a row,
// decode alone for a while, then try the pool again.
class ThreadGovernor {
 public:
  explicit ThreadGovernor(kernels::ThreadPool* pool) : pool_(pool), full_(pool->active()) {}
  ~ThreadGovernor() { pool_->set_active(full_); }
  void StepStart() {
    t0_ = Clock::now();
    w0_ = pool_->waited_seconds();
  }
  void StepEnd() {
    if (solo_left_ > 0) {
      if (--solo_left_ == 0) pool_->set_active(full_);
      return;
    }
    const double step = Seconds(t0_, Clock::now()), waited = pool_->waited_seconds() - w0_;
    slow_ = waited > 0.25 * step ? slow_ + 1 : 0;
    if (slow_ >= 2 && full_ > 1) {
      pool_->set_active(1);
      solo_left_ = 32;
      slow_ = 0;
    }
  }

 private:
  kernels::ThreadPool* pool_;
  int full_;
  int slow_ = 0, solo_left_ = 0;
  Clock::time_point t0_;
  double w0_ = 0;
};

}  // namespace

Result<std::vector<int32_t>> TextIds(const Tokenizer* tok, const std::string& text) {
  if (!tok) return FailedPreconditionError("the model has no tokenizer");
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode(text));
  if (tok->add_bos() && tok->bos_id() && (ids.empty() || ids[0] != *tok->bos_id())) ids.insert(ids.begin(), *tok->bos_id());
  return ids;
}

Result<std::vector<int32_t>> PromptIds(const Tokenizer* tok, const ChatTemplate* chat, const std::vector<ChatMessage>& messages) {
  if (!chat) return FailedPreconditionError("the model has no recognised chat template; choose one with --chat-template chatml|llama3");
  return TextIds(tok, chat->Render(messages, /*add_generation_prompt=*/true));
}

Status CheckGeneration(const ModelConfig& c, const std::vector<int32_t>& prompt, const GenerateOptions& options) {
  if (prompt.empty()) return InvalidArgumentError("the prompt is empty");
  if (options.max_tokens < 0) return InvalidArgumentError("max tokens must be >= 0");
  const SamplingOptions& so = options.sampling;
  // Written so that NaN fails every check.
  if (!(so.temperature >= 0 && std::isfinite(so.temperature)) || !(so.top_p > 0 && so.top_p <= 1) ||
      !(so.repetition_penalty > 0 && std::isfinite(so.repetition_penalty))) {
    return InvalidArgumentError("sampling options out of range (temperature >= 0, 0 < top-p <= 1, repetition penalty > 0)");
  }
  if (int64_t(prompt.size()) >= c.context_length) {
    return FailedPreconditionError("the prompt has " + std::to_string(prompt.size()) + " tokens, the model's context holds " +
                                   std::to_string(c.context_length) + " (shorten the prompt or the conversation)");
  }
  for (int32_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) return InvalidArgumentError("prompt token id " + std::to_string(id) + " is outside the vocabulary");
  }
  return Status::Ok();
}

int64_t GenerationCapacity(const ModelConfig& c, const std::vector<int32_t>& prompt, const GenerateOptions& options) {
  return std::min<int64_t>(c.context_length, int64_t(prompt.size()) + options.max_tokens + 1);
}

void SampleLoop(const ModelConfig& c, const Tokenizer* tok, const ChatTemplate* chat, const GenerateOptions& options,
                const TextCallback& on_text, float* logits, const StepFn& step, std::vector<int32_t>* history,
                GenerateResult* result) {
  std::unordered_set<int32_t> eos;
  if (options.stop_at_eos && tok) {
    if (tok->eos_id()) eos.insert(*tok->eos_id());
    if (chat) {
      if (auto id = tok->TokenToId(chat->end_of_turn())) eos.insert(*id);
    }
  }
  TextStream stream(options.stop, on_text);
  Sampler sampler(options.sampling);
  ThreadGovernor governor(&kernels::ThreadPool::Default());
  result->finish_reason = "length";
  for (int i = 0; i < options.max_tokens; ++i) {
    if (!std::all_of(logits, logits + c.vocab_size, [](float v) { return std::isfinite(v); })) {
      result->finish_reason = "non_finite";
      break;
    }
    int32_t next = sampler.Sample(logits, c.vocab_size, *history);
    if (eos.count(next)) {
      result->finish_reason = "stop";
      break;
    }
    result->tokens.push_back(next);
    history->push_back(next);
    if (tok && !stream.Append(tok->TokenBytes(next))) {
      result->finish_reason = stream.cancelled() ? "cancelled" : "stop";
      break;
    }
    if (i + 1 == options.max_tokens) break;
    governor.StepStart();
    const bool room = step(next, logits);
    governor.StepEnd();
    if (!room) {
      result->finish_reason = "context";
      break;
    }
  }
  if (!stream.stopped() && !stream.cancelled()) stream.Flush();
  result->text = stream.text();
}

}  // namespace attune::runtime
