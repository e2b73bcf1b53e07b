// The one generation path: every caller that turns a prompt into tokens and
// tokens into a reply (the engine, the trainer's base answers, evaluations)
// goes through PromptIds and Generate, so training and serving see the same
// tokens.
//
// Thread safety: reentrant; the model is shared read-only.
#pragma once

#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model.h"
#include "attune/runtime/prompt_cache.h"

namespace attune::runtime {

// Token ids of raw prompt text (special tokens parsed), with the model's BOS
// rule applied (a BOS is prepended when the tokenizer asks for one).
Result<std::vector<int32_t>> TextIds(const Model& model, const std::string& text);

// Token ids of a chat rendered with the model's template, ready for the
// assistant's reply (generation prompt appended), BOS rule applied.
// FailedPrecondition when the model has no recognised chat template.
Result<std::vector<int32_t>> PromptIds(const Model& model, const std::vector<ChatMessage>& messages);

// A prompt cache and the snapshot whose weights (`lora`, or the merged
// model) a generation runs with: null for the base model.
struct PromptReuse {
  PromptCache* cache = nullptr;
  std::shared_ptr<const ActiveAdapter> adapter;
};

// Prefill `prompt`, then decode up to options.max_tokens tokens with
// `lora` (null: the base model). options.adapter/use_active_adapter are
// ignored here (the engine resolves them); result.adapter_version is left
// empty. With `reuse`, the longest prefix of the prompt cached under
// reuse->adapter is restored instead of computed
// (result.cached_prompt_tokens), and the prompt with its reply is cached
// afterwards. InvalidArgument for bad options or token ids,
// FailedPrecondition when the prompt does not fit the context, Internal when
// LibTorch fails.
Result<GenerateResult> Generate(const Model& model, const LoraWeights* lora, const std::vector<int32_t>& prompt,
                                const GenerateOptions& options, const TextCallback& on_text = nullptr,
                                const PromptReuse* reuse = nullptr);

// Greedy reply to one user message (no system prompt), as text; the
// trainer's anchors and evaluations use it. `*cut` tells whether the reply
// was cut at max_tokens before its end of turn.
Result<std::string> GreedyReply(const Model& model, const LoraWeights* lora, const std::string& user_message,
                                int max_tokens, bool* cut = nullptr);

// A one-message chat prompt followed by an answer, as one id sequence;
// position `first` predicts the answer's first token (for an empty answer:
// what the model says first, usually the end of its turn).
struct AnsweredPrompt {
  std::vector<int32_t> ids;
  int64_t first = 0;
};
Result<AnsweredPrompt> AnswerIds(const Model& model, const std::string& user_message, const std::string& answer);
// The same after a whole chat.
Result<AnsweredPrompt> AnswerIds(const Model& model, const std::vector<ChatMessage>& chat, const std::string& answer);

// Mean KL(base || adapted) of the next-token distributions at the answer
// positions of `answers`, teacher-forced (the forgetting measure of the
// trainer's gate and of evaluations). NaN when there are none.
double MeanAnswerKl(const Model& model, const LoraWeights& lora, const std::vector<AnsweredPrompt>& answers);

// Whether the model (`lora`, or the base when null) already says `answer`
// to `context`: teacher-forced, every token of the answer is the greedy
// choice at its position, up to `tolerance` in logits (two computations of
// a near tie may pick either token). False for an empty answer. Errors:
// those of PromptIds and the tokenizer.
Result<bool> GivesAnswer(const Model& model, const LoraWeights* lora, const std::vector<ChatMessage>& context,
                         const std::string& answer, double tolerance = 0.05);

}  // namespace attune::runtime
