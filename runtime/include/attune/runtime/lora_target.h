// The linear maps a LoRA adapter may target, in the order used everywhere
// (CLI --targets, adapters, trainer masks). A plain header: option structs
// that name targets need it without the model's LibTorch types.
#pragma once

namespace attune::runtime {

enum LoraTarget { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kNumLoraTargets };

}  // namespace attune::runtime
