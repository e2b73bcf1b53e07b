// Open assistants by handle. A handle is a number the library hands out
// once (never reused in a process), not a pointer: a call with a closed
// handle finds nothing and fails cleanly instead of touching freed memory.
#pragma once

#include <memory>

#include "attune/assistant.h"
#include "attune/attune.h"

namespace attune::capi {

struct OpenAssistant {
  std::unique_ptr<Assistant> assistant;
  trainer::TrainingRunOptions training;  // attune_train_now's defaults
};

// Registers `opened` and returns its new handle.
attune_assistant* Register(std::shared_ptr<OpenAssistant> opened);
// The assistant of `handle`, or null when it is closed or was never opened.
// Callers keep the returned pointer for the length of their call, so a
// concurrent close only drops the registry's reference.
std::shared_ptr<OpenAssistant> Find(attune_assistant* handle);
// Removes `handle`; returns its assistant (null when not open).
std::shared_ptr<OpenAssistant> Unregister(attune_assistant* handle);

}  // namespace attune::capi
