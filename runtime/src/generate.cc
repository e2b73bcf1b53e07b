#include "attune/runtime/generate.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/src/decode.h"
#include "runtime/src/decode_loop.h"
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Whether every projection has a many-row integer kernel: then the lean
// pass prefills as fast as LibTorch's; otherwise (fp32 weights, types
// without one, the scalar kernels) BLAS is much faster for many rows.
bool LeanPrefillFast(const PlainWeights& w) {
  for (const auto& L : w.layers) {
    for (const QuantMatrix* p : L.proj) {
      if (!kernels::FastMultiRows(p->type)) return false;
    }
  }
  return true;
}

}  // namespace

Result<std::vector<int32_t>> TextIds(const Model& model, const std::string& text) { return TextIds(model.tokenizer(), text); }

Result<std::vector<int32_t>> PromptIds(const Model& model, const std::vector<ChatMessage>& messages) {
  return PromptIds(model.tokenizer(), model.chat_template(), messages);
}

Result<GenerateResult> Generate(const Model& model, const LoraWeights* lora, const std::vector<int32_t>& prompt,
                                const GenerateOptions& options, const TextCallback& on_text, const PromptReuse* reuse) {
  const ModelConfig& c = model.config();
  RETURN_IF_ERROR(CheckGeneration(c, prompt, options));
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());
  std::vector<int32_t> history = prompt;
  try {
    at::NoGradGuard no_grad;
    KvCache cache = model.NewCache(GenerationCapacity(c, prompt, options));
    auto t0 = Clock::now();
    const int64_t reused = reuse && reuse->cache ? reuse->cache->Restore(reuse->adapter, prompt, &cache) : 0;
    result.cached_prompt_tokens = int(reused);
    // The lean pass (plain buffers) when it can serve this adapter and
    // cache, LibTorch's Forward otherwise (a training-mode LoRA).
    PlainWeights plain;
    PlainLora plain_lora;
    PlainCache plain_cache;
    const bool lean = PlainViews(model, lora, &cache, &plain, &plain_lora, &plain_cache);
    const PlainLora* pl = lora ? &plain_lora : nullptr;
    DecodeScratch scratch;
    std::vector<float> logits(size_t(c.vocab_size));
    ForwardOptions fo;
    fo.last_logits_only = true;
    auto torch_forward = [&](const std::vector<int32_t>& ids, float* out) {
      at::Tensor t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
      at::Tensor l = Forward(model, lora, t, &cache, fo).reshape({-1}).contiguous();
      std::copy_n(l.data_ptr<float>(), c.vocab_size, out);
    };
    const std::vector<int32_t> rest(prompt.begin() + reused, prompt.end());
    if (lean && (rest.size() == 1 || LeanPrefillFast(plain))) {
      ForwardRows(plain, pl, rest.data(), int64_t(rest.size()), &plain_cache, logits.data(), &scratch);
      cache.length = plain_cache.length;
    } else {
      torch_forward(rest, logits.data());
    }
    auto t1 = Clock::now();
    result.prefill_seconds = Seconds(t0, t1);
    auto step = [&](int32_t next, float* out) {
      if (cache.length >= cache.capacity) return false;
      if (lean) {
        plain_cache.length = cache.length;
        ForwardRows(plain, pl, &next, 1, &plain_cache, out, &scratch);
        cache.length = plain_cache.length;
      } else {
        torch_forward({next}, out);
      }
      return true;
    };
    SampleLoop(c, model.tokenizer(), model.chat_template(), options, on_text, logits.data(), step, &history, &result);
    result.decode_seconds = Seconds(t1, Clock::now());
    // A broken adapter's state is not worth keeping.
    if (reuse && reuse->cache && result.finish_reason != "non_finite") reuse->cache->Store(reuse->adapter, history, cache);
  } catch (const c10::Error& e) {
    return InternalError(std::string("generation failed in LibTorch: ") + e.what_without_backtrace());
  }
  return result;
}

Result<std::string> GreedyReply(const Model& model, const LoraWeights* lora, const std::string& user_message, int max_tokens,
                                bool* cut) {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptIds(model, {{"user", user_message}}));
  GenerateOptions o;
  o.max_tokens = max_tokens;
  ASSIGN_OR_RETURN(GenerateResult r, Generate(model, lora, ids, o));
  if (cut) *cut = r.finish_reason != "stop";
  return r.text;
}

Result<AnsweredPrompt> AnswerIds(const Model& model, const std::string& user_message, const std::string& answer) {
  return AnswerIds(model, std::vector<ChatMessage>{{"user", user_message}}, answer);
}

Result<AnsweredPrompt> AnswerIds(const Model& model, const std::vector<ChatMessage>& chat, const std::string& answer) {
  if (!model.tokenizer()) return FailedPreconditionError("the model has no tokenizer");
  AnsweredPrompt a;
  ASSIGN_OR_RETURN(a.ids, PromptIds(model, chat));
  ASSIGN_OR_RETURN(std::vector<int32_t> answer_ids, model.tokenizer()->Encode(answer, /*parse_special=*/false));
  a.first = int64_t(a.ids.size()) - 1;
  a.ids.insert(a.ids.end(), answer_ids.begin(), answer_ids.end());
  return a;
}

double MeanAnswerKl(const Model& model, const LoraWeights& lora, const std::vector<AnsweredPrompt>& answers) {
  at::NoGradGuard ng;
  // Up to eight answers of similar lengths at a time (PadInBatches); the
  // head runs only at the scored rows: from the position predicting the
  // answer's first token to its last token's (what follows the answer,
  // usually the end of turn).
  std::vector<std::vector<int64_t>> sequences;
  for (const auto& a : answers) {
    if (int64_t(a.ids.size()) > a.first) sequences.emplace_back(a.ids.begin(), a.ids.end());
    else sequences.emplace_back();  // no answer position: left out
  }
  double kl = 0;
  int64_t positions = 0;
  for (const PaddedBatch& batch : PadInBatches(sequences, 8)) {
    const int64_t T = batch.length;
    std::vector<int64_t> rows;
    for (size_t b = 0; b < batch.members.size(); ++b) {
      const AnsweredPrompt& a = answers[batch.members[b]];
      for (int64_t t = a.first; t < int64_t(a.ids.size()); ++t) rows.push_back(int64_t(b) * T + t);
    }
    // (The chat template's system turn, which every answer's prompt begins
    // with, runs once a batch: HiddenStates.)
    const at::Tensor scored = at::tensor(rows, at::kLong);
    const auto hidden = [&](const LoraWeights* l) {
      const at::Tensor x = HiddenStates(model, l, batch.tokens);
      return x.reshape({-1, x.size(-1)}).index_select(0, scored);
    };
    const at::Tensor base_rows = hidden(nullptr), adapted_rows = hidden(&lora);
    // The head's log-probabilities a chunk of rows at a time (a row is the
    // vocabulary's width: 192 KiB for SmolLM2).
    constexpr int64_t kRows = 64;
    for (int64_t r0 = 0; r0 < base_rows.size(0); r0 += kRows) {
      const int64_t r = std::min(kRows, base_rows.size(0) - r0);
      const at::Tensor base = at::log_softmax(HeadForward(model, base_rows.narrow(0, r0, r)), -1);
      const at::Tensor adapted = at::log_softmax(HeadForward(model, adapted_rows.narrow(0, r0, r)), -1);
      kl += (base.exp() * (base - adapted)).sum().item<double>();
    }
    positions += int64_t(rows.size());
  }
  return positions ? kl / double(positions) : std::numeric_limits<double>::quiet_NaN();
}

Result<bool> GivesAnswer(const Model& model, const LoraWeights* lora, const std::vector<ChatMessage>& context,
                         const std::string& answer, double tolerance) {
  ASSIGN_OR_RETURN(AnsweredPrompt a, AnswerIds(model, context, answer));
  const int64_t n = int64_t(a.ids.size()) - a.first - 1;  // the answer's tokens
  if (n <= 0) return false;
  at::NoGradGuard ng;
  const std::vector<int64_t> v(a.ids.begin(), a.ids.end());
  const at::Tensor x = HiddenStates(model, lora, at::tensor(v, at::kLong).unsqueeze(0))[0];
  const at::Tensor logits = HeadForward(model, x.narrow(0, a.first, n).unsqueeze(0))[0].to(at::kFloat);
  const at::Tensor targets = at::tensor(std::vector<int64_t>(v.begin() + a.first + 1, v.end()), at::kLong);
  const at::Tensor gap = std::get<0>(logits.max(-1)) - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  return gap.max().item<double>() <= tolerance;
}

}  // namespace attune::runtime
