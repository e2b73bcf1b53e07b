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
#include "attune/runtime/generate.h"
#include "attune/runtime/model.h"
#include "attune/trainer/adamw.h"
#include "attune/trainer/lora_params.h"
#include "attune/trainer/objective.h"
#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

// TrainerOptions, TrainReport and TrainProgress live in trainer_options.h.

// What a training window trains on, recorded in its checkpoint so that a
// later window resumes exactly these events from exactly this parent (every
// window samples afresh, so the sample alone cannot find them again).
struct WindowIdentity {
  std::vector<std::string> new_event_ids;     // in sample order
  std::vector<std::string> replay_event_ids;  // in sample order
  std::string parent_version;                 // "" = trained from zero
  uint64_t cursor_before = 0, cursor_after = 0;  // the replay store's cursors
};

struct TrainInput {
  // The user's examples (feedback::ToExamples of the sampled events).
  std::vector<feedback::Example> new_examples;
  std::vector<feedback::Example> replay_examples;
  // The adapter to continue from (parameters() order) and its version; empty
  // = start from zero.
  std::vector<at::Tensor> parent;
  std::string parent_version;
  // Written into the checkpoint (see WindowIdentity); a checkpoint resumes
  // only an input with the same identity. Default: empty
  WindowIdentity window;
};

struct TrainOutcome {
  TrainReport report;
  // The candidate adapter (LoraParams::names() order); empty when the run
  // stopped before finishing (the checkpoint holds the state).
  std::vector<std::string> names;
  std::vector<at::Tensor> adapter;
};

// The window identity recorded in the checkpoint at `path`. NotFound when
// there is none, DataLoss when it is corrupt.
Result<WindowIdentity> ReadCheckpointWindow(const std::string& path);

// The learning rate of step `step` (0-based) of a window. A linear
// warm-up over o.warmup_steps: a fresh AdamW's first steps are its largest,
// relative to the gradient, so they start small (at lr / (warmup_steps + 1),
// where transformers starts at 0). Then, by o.lr_schedule, constant, or
// falling linearly to 0 at max_steps as transformers'
// get_linear_schedule_with_warmup.
double ScheduledLr(const TrainerOptions& o, int64_t step);

class Trainer {
 public:
  Trainer(std::shared_ptr<const runtime::Model> model, TrainerOptions options);

  // Trains. With a non-empty `checkpoint_path`, resumes from the checkpoint
  // there when one exists (it must match the base model, the options that
  // shape the state, and the examples), writes it every
  // checkpoint_every_steps and when stopped early, and removes it after a
  // completed run. Errors: InvalidArgument when no example is trainable (the
  // notes say why), FailedPrecondition for a checkpoint of another base
  // model or configuration, DataLoss for a corrupt checkpoint, Internal
  // when LibTorch fails (c10::Error), Unavailable when memory runs out
  // (std::bad_alloc; retry with a smaller budget): no exception leaves Run. A window whose steps keep coming out
  // non-finite ends early (report.stop_reason "non_finite", no adapter, the
  // checkpoint removed).
  Result<TrainOutcome> Run(const TrainInput& input, const std::string& checkpoint_path,
                           const std::function<bool()>& should_stop,
                           const std::function<void(const TrainProgress&)>& progress);

  // Mean per-token NLL of the preferred completions of `examples` under
  // `lora` (null: the base model). NaN when empty.
  double MeanLoss(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora) const;
  // TrainReport::unlikelihood_* and dpo_loss_* of `examples` under `lora`.
  double EvalUnlikelihood(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora) const;
  // With `reward_accuracy`, also the share of pairs whose margin is positive.
  double EvalDpoLoss(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora,
                     double* reward_accuracy = nullptr) const;
  // Mean KL(base || adapted) of the next-token distributions over the base
  // model's own greedy answers to the forgetting prompts (teacher-forced),
  // per answer position.
  double ForgettingKl(const runtime::LoraWeights& lora) const;

 private:
  Result<TrainOutcome> RunUnguarded(const TrainInput& input, const std::string& checkpoint_path,
                                    const std::function<bool()>& should_stop,
                                    const std::function<void(const TrainProgress&)>& progress);

  std::shared_ptr<const runtime::Model> model_;
  TrainerOptions o_;
  // (prompt + base answer, index of the first answer-predicting position).
  mutable std::vector<runtime::AnsweredPrompt> kl_sequences_;
};

}  // namespace attune::trainer
