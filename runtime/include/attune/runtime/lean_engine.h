// LeanEngine: generation without LibTorch, for serving processes that must
// stay small (`attune-run`, apps that only answer). It loads GGUF files with
// their weights quantized in memory (the file's blocks, memory-mapped), runs
// prefill and decode through the lean forward pass over plain buffers, and
// serves an unmerged LoRA adapter, scoped or not (a scope is judged over the
// same forward pass, runtime/scope.h's rule). Tokens, stops and streaming are the
// Engine's (engine.h): the same sampling loop and, for the quantized types
// with many-row kernels, the same forward pass, so both give the same
// replies. What it does not do: Hugging Face directories, fp32 weights,
// merged adapters, the prompt cache, training.
//
// Thread safety: Chat/Complete/GenerateIds may run concurrently (each
// generation has its own cache), and with SetAdapter/ClearAdapter: a
// generation pins the adapter it started with, as the Engine's do.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/tokenizer.h"

namespace attune::adapters {
struct Adapter;
struct BaseModelInfo;
}

namespace attune::runtime {

struct LeanEngineOptions {
  std::string model_path;     // GGUF file. Required.
  std::string chat_template;  // "chatml" | "llama3" override. Default: "" (detect)
  // Threads of the kernels' pool. Default: 0 (ATTUNE_THREADS or all cores).
  int threads = 0;
};

class LeanEngine {
 public:
  // NotFound for a missing file; InvalidArgument for a directory (Hugging
  // Face weights need the LibTorch Engine); the loader's errors otherwise.
  static Result<std::unique_ptr<LeanEngine>> Open(const LeanEngineOptions& options);
  ~LeanEngine();

  Result<GenerateResult> Chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options,
                              const TextCallback& on_text = nullptr) const;
  Result<GenerateResult> Complete(const std::string& prompt, const GenerateOptions& options,
                                  const TextCallback& on_text = nullptr) const;
  // options.adapter is not supported here (InvalidArgument); the installed
  // adapter serves unless options.use_active_adapter is false.
  Result<GenerateResult> GenerateIds(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                     const TextCallback& on_text = nullptr) const;

  // The next-token logits [vocab] after `ids` (one prefill, no sampling),
  // with the installed adapter. InvalidArgument for ids outside the
  // vocabulary, FailedPrecondition when they do not fit the context.
  Result<std::vector<float>> NextTokenLogits(const std::vector<int32_t>& ids) const;

  // Checks `adapter` against the model (FailedPrecondition naming the
  // tensor) and serves it from the next generation on; the slot is
  // unchanged on failure.
  Status SetAdapter(const adapters::Adapter& adapter, const std::string& version);
  void ClearAdapter();
  std::string adapter_version() const;

  const ModelConfig& config() const;
  // nullptr when the file has no tokenizer.
  const Tokenizer* tokenizer() const;
  // nullptr when the model has no recognisable chat template.
  const ChatTemplate* chat_template() const;
  // The same fingerprint Model::fingerprint() gives for the file.
  const std::string& fingerprint() const;
  int64_t parameter_count() const;
  // What an adapter must match to load on this model.
  adapters::BaseModelInfo base_info() const;

 private:
  struct Impl;
  explicit LeanEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attune::runtime
