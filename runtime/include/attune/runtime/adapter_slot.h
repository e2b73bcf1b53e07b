// The runtime's adapter slot: an immutable, ready-to-use adapter snapshot
// (tensors already in the runtime's layout) that generations pin when they
// start. Publishing is one pointer swap under a tiny lock
// (adapters::SnapshotSlot); it never waits for a generation and a running
// generation keeps the snapshot it pinned until it ends, so every response
// is produced by exactly one adapter version.
#pragma once

#include <memory>
#include <string>

#include "attune/adapters/adapter.h"
#include "attune/adapters/snapshot.h"
#include "attune/core/result.h"
#include "attune/runtime/model.h"

namespace attune::runtime {

struct ActiveAdapter {
  std::string version;  // registry version id, or a label for files
  LoraWeights weights;
  // The requests it answers (runtime/scope.h); empty: all of them.
  adapters::Scope scope;
  // Merged mode: the base with this adapter folded in; generations use it
  // with no LoRA term. Null in the default, unmerged mode.
  std::shared_ptr<const Model> merged;
};

// What an adapter must match to load on `model`.
adapters::BaseModelInfo BaseInfo(const Model& model);

// Checks compatibility (FailedPrecondition naming the tensor, with a hint)
// and converts the float buffers into LibTorch tensors.
Result<std::shared_ptr<const ActiveAdapter>> MakeActiveAdapter(const Model& model, const adapters::Adapter& adapter,
                                                               std::string version);

using AdapterSlot = adapters::SnapshotSlot<ActiveAdapter>;

}  // namespace attune::runtime
