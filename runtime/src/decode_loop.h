// What every generation does around the forward pass, with no LibTorch:
// checking its inputs, turning prompts into ids, and the sampling loop
// (sampling, stop tokens and strings, streaming whole UTF-8 characters,
// finish reasons, backing off the thread pool when a core is taken). The
// LibTorch Generate (generate.h) and the LibTorch-free LeanEngine
// (lean_engine.h) both run it, so they stop and stream alike.
#pragma once

#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/tokenizer.h"

namespace attune::runtime {

// Token ids of raw prompt text (special tokens parsed), with the
// tokenizer's BOS rule applied.
Result<std::vector<int32_t>> TextIds(const Tokenizer* tokenizer, const std::string& text);
// Token ids of a chat rendered with `chat`, ready for the assistant's reply.
Result<std::vector<int32_t>> PromptIds(const Tokenizer* tokenizer, const ChatTemplate* chat,
                                       const std::vector<ChatMessage>& messages);

// InvalidArgument for bad options or token ids, FailedPrecondition when the
// prompt does not fit the context.
Status CheckGeneration(const ModelConfig& config, const std::vector<int32_t>& prompt, const GenerateOptions& options);
// Positions a cache needs for this generation.
int64_t GenerationCapacity(const ModelConfig& config, const std::vector<int32_t>& prompt, const GenerateOptions& options);

// Computes the next-token logits after appending `token` (overwriting
// `logits`); returns false, computing nothing, when the context is full.
using StepFn = std::function<bool(int32_t token, float* logits)>;

// Samples from `logits` (the prompt's next-token logits), streams and stops:
// fills result->tokens, text and finish_reason. `history` starts as the
// prompt and ends as prompt + reply.
void SampleLoop(const ModelConfig& config, const Tokenizer* tokenizer, const ChatTemplate* chat,
                const GenerateOptions& options, const TextCallback& on_text, float* logits, const StepFn& step,
                std::vector<int32_t>* history, GenerateResult* result);

}  // namespace attune::runtime
