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
#include "attune/trainer/training_run_options.h"

namespace attune::trainer {

// TrainingRunOptions and TrainingRunResult live in training_run_options.h.

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

}  // namespace attune::trainer
