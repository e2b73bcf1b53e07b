// The linear maps a LoRA adapter may target are adapters::LoraTarget, the
// one list (CLI --targets, adapters, trainer masks). The model's per-layer
// arrays are indexed by these constants, taken from it. A plain header:
// option structs that name targets need it without the model's LibTorch types.
#pragma once

#include "attune/adapters/adapter.h"

namespace attune::runtime {

using adapters::kNumLoraTargets;
inline constexpr int kQ = int(adapters::LoraTarget::kQ), kK = int(adapters::LoraTarget::kK),
                     kV = int(adapters::LoraTarget::kV), kO = int(adapters::LoraTarget::kO),
                     kGate = int(adapters::LoraTarget::kGate), kUp = int(adapters::LoraTarget::kUp),
                     kDown = int(adapters::LoraTarget::kDown);

}  // namespace attune::runtime
