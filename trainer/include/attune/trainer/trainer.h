// The LoRA trainer: turns examples into a candidate adapter plus an
// evaluation report, on the shared frozen base model, within a memory
// budget, stoppable between micro-steps and resumable from a checkpoint.
//
// Thread model: Run() executes on the calling thread and uses LibTorch's
// intra-op pool as configured by runtime::ConfigureThreads. `should_stop` is
// polled between micro-steps, so a closing window stops training within one
// micro-step; the checkpoint is written before Run returns.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/model.h"
#include "attune/trainer/adamw.h"
#include "attune/trainer/lora_params.h"
#include "attune/trainer/objective.h"

namespace attune::trainer {

struct TrainerOptions {
  LoraConfig lora;
  AdamWOptions adamw = {.lr = 1e-3};  // Default: lr 1e-3, no weight decay
  int64_t max_steps = 60;             // optimizer steps per run. Default: 60
  double max_minutes = 0;             // wall-clock cap; 0 = none. Default: 0
  // Examples per micro-batch; 0 picks the largest that fits max_memory_mb.
  // Default: 0
  int64_t micro_batch_size = 0;
  int64_t grad_accum_steps = 2;       // micro-batches per optimizer step. Default: 2
  // Token budget per optimizer step: micro-batches stop being added once it
  // is reached (at least one always runs). 0 = none. Default: 0
  int64_t max_tokens_per_step = 0;
  EncodeOptions encode;               // Default: max_seq_len 256
  bool gradient_checkpointing = true; // Default: true
  // Memory the trainer may use on top of the model's weights. Default: 1024
  double max_memory_mb = 1024;
  double sft_weight = 1.0;            // Default: 1
  double dpo_weight = 1.0;            // Default: 1
  double kto_weight = 1.0;            // Default: 1
  double dpo_beta = 0.1;              // Default: 0.1 (TRL's default)
  double kto_beta = 0.1;              // Default: 0.1
  // Weight of the L2 pull toward the parent adapter: lambda * ||theta - parent||^2.
  // Default: 0 (off)
  double l2_to_parent = 0.0;
  uint64_t seed = 0;                  // data order, LoRA init, dropout. Default: 0
  // Held-back slice: with at least heldout_min_examples new examples, every
  // heldout_every-th one (by position, rotated by `rotation`, so that a
  // later run trains on it) is held out of training and scored. Below the
  // minimum, everything trains and the report says so. Default: 20, 10, 0
  int64_t heldout_min_examples = 20;
  int64_t heldout_every = 10;
  int64_t rotation = 0;
  int64_t checkpoint_every_steps = 20;  // Default: 20
  // Prompts for the forgetting KL (scored on the base model's own greedy
  // answers to them); empty = the built-in general set.
  std::vector<std::string> forgetting_prompts;
  // Anti-forgetting anchors: the base model's own greedy answers to this
  // many built-in general prompts (a set disjoint from the forgetting
  // prompts) are mixed into training with a distillation loss toward the
  // base model's full next-token distributions, so the adapter learns the
  // user's facts without rewriting everything else. 0 = off. Default: 16
  int64_t anchor_examples = 16;
  double anchor_weight = 1.0;         // Default: 1
  int64_t anchor_max_tokens = 48;     // Default: 48
};

struct TrainInput {
  std::vector<TextExample> new_examples;
  std::vector<TextExample> replay_examples;
  // The adapter to continue from (parameters() order) and its version; empty
  // = start from zero.
  std::vector<at::Tensor> parent;
  std::string parent_version;
};

struct TrainReport {
  bool completed = false;
  std::string stop_reason;            // "max_steps", "max_minutes", "stopped"
  int64_t steps = 0, tokens = 0;
  int64_t micro_batch_size = 0;
  double wall_seconds = 0, tokens_per_second = 0, peak_rss_mb = 0;
  int64_t new_examples = 0, replay_examples = 0, heldout_examples = 0, skipped_examples = 0;
  std::vector<std::string> notes;     // skipped examples, held-out policy, truncation
  // Mean per-token NLL of the preferred completion (SFT target, DPO chosen,
  // desirable KTO completion); NaN when there is nothing to score.
  double new_loss_parent = 0, new_loss_candidate = 0;
  double replay_loss_parent = 0, replay_loss_candidate = 0;
  double heldout_loss_parent = 0, heldout_loss_candidate = 0;
  double dpo_reward_accuracy = 0;     // NaN without pairs
  double forgetting_kl = 0;           // mean KL(base || adapted) per position
  std::vector<double> loss_curve;     // training loss per step
  std::string ToJson() const;
};

struct TrainProgress {
  int64_t step = 0, max_steps = 0;
  double loss = 0, tokens_per_second = 0, eta_seconds = 0;
};

struct TrainOutcome {
  TrainReport report;
  // The candidate adapter (LoraParams::names() order); empty when the run
  // stopped before finishing (the checkpoint holds the state).
  std::vector<std::string> names;
  std::vector<at::Tensor> adapter;
};

class Trainer {
 public:
  Trainer(std::shared_ptr<const runtime::Model> model, TrainerOptions options);

  // Trains. With a non-empty `checkpoint_path`, resumes from the checkpoint
  // there when one exists (it must match the base model, the options that
  // shape the state, and the examples), writes it every
  // checkpoint_every_steps and when stopped early, and removes it after a
  // completed run. Errors: InvalidArgument when no example is trainable (the
  // notes say why), FailedPrecondition for a checkpoint of another base
  // model or configuration, DataLoss for a corrupt checkpoint.
  Result<TrainOutcome> Run(const TrainInput& input, const std::string& checkpoint_path,
                           const std::function<bool()>& should_stop,
                           const std::function<void(const TrainProgress&)>& progress);

  // Mean per-token NLL of the preferred completions of `examples` under
  // `lora` (null: the base model). NaN when empty.
  double MeanLoss(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora) const;
  // Mean KL(base || adapted) of the next-token distributions over the base
  // model's own greedy answers to the forgetting prompts (teacher-forced),
  // per answer position.
  double ForgettingKl(const runtime::LoraWeights& lora) const;

 private:
  std::shared_ptr<const runtime::Model> model_;
  TrainerOptions o_;
  // (prompt + base answer, index of the first answer-predicting position).
  mutable std::vector<std::pair<std::vector<int64_t>, int64_t>> kl_sequences_;
};

}  // namespace attune::trainer
