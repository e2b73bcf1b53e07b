// One training window, end to end: sample the replay store (new events plus
// replayed old ones), turn events into examples, continue from the active
// adapter, train (resuming a checkpoint of an interrupted window), hand the
// candidate and its report to the registry, record lineage in the store, and
// let the gate decide on promotion.
//
// Thread safety: run one at a time per data directory (the checkpoint file is
// per data directory); the store and registry are thread-safe themselves.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "attune/adapters/adapter.h"
#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/feedback/example.h"
#include "attune/replay/store.h"
#include "attune/runtime/model.h"
#include "attune/trainer/trainer.h"

namespace attune::trainer {

struct TrainingRunOptions {
  TrainerOptions trainer;
  // New events per window and the replay mix. Default: max_new 256,
  // replay_ratio 0.5 (one old event per two new ones).
  replay::SampleOptions sample;
  feedback::ExampleOptions examples;
  bool promote = true;  // submit the candidate to the gate. Default: true
  bool force = false;   // promote even if the gate says no (recorded). Default: false
};

struct TrainingRunResult {
  bool trained = false;        // false: nothing new to learn (see skipped_reason)
  std::string skipped_reason;
  bool completed = false;      // false: stopped early; the checkpoint resumes it
  TrainReport report;
  std::string version;         // full id of the candidate in the registry
  std::string label;           // "vN"
  bool promoted = false;
  std::string gate_summary;    // "passed" or the failed rules
};

Result<TrainingRunResult> RunTrainingWindow(std::shared_ptr<const runtime::Model> model, replay::Store& store,
                                            adapters::Registry& registry, const std::string& checkpoint_path,
                                            const TrainingRunOptions& options,
                                            const std::function<bool()>& should_stop,
                                            const std::function<void(const TrainProgress&)>& progress);

// Trainer tensors (LoraParams order) -> an Adapter with the report inside,
// ready for the registry.
Result<adapters::Adapter> ToAdapter(const runtime::Model& model, const LoraConfig& config,
                                    const std::vector<at::Tensor>& tensors);
// The reverse, for continuing from a registry adapter. FailedPrecondition
// when its rank, alpha or targets differ from `config` (then the caller
// starts from zero).
Result<std::vector<at::Tensor>> FromAdapter(const runtime::Model& model, const LoraConfig& config,
                                            const adapters::Adapter& adapter);

// The examples of stored events, in the trainer's form.
std::vector<TextExample> ToTextExamples(const std::vector<feedback::Example>& examples);

}  // namespace attune::trainer
