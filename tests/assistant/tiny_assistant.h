// The tiny model behind an Assistant, trained quickly: shared by the
// assistant's tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "attune/assistant.h"
#include "tests/runtime/test_util.h"

namespace attune::testing {

// A fresh folder under the temporary directory, removed at the end.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix) {
    path = (std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Rank 4, 30 steps at lr 1e-2, two short anchors, one forgetting prompt;
// the forgetting bound is lifted (a random tiny model moves a lot; the gate's
// other rules still apply).
inline AssistantOptions TinyAssistantOptions(const std::string& dir) {
  AssistantOptions o;
  o.data_dir = dir;
  o.model_path = Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";  // the tiny model's vocabulary is byte-level ASCII
  o.training.trainer.lora.rank = 4;
  o.training.trainer.lora.alpha = 8;
  o.training.trainer.lora.dropout = 0;
  o.training.trainer.max_steps = 30;
  o.training.trainer.micro_batch_size = 4;
  o.training.trainer.grad_accum_steps = 1;
  o.training.trainer.adamw.lr = 1e-2;
  o.training.trainer.encode.max_seq_len = 64;
  o.training.trainer.anchor_examples = 2;
  o.training.trainer.anchor_max_tokens = 8;
  o.training.trainer.forgetting_prompts = {"hi"};
  o.gate.max_forgetting_kl = 100;
  return o;
}

}  // namespace attune::testing
