// JSON inputs of the C ABI -> the C++ option and value types.
// Every error is InvalidArgument naming the key ("options.training.rank").
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attune/assistant.h"
#include "attune/core/result.h"

namespace attune::capi {

// The attune_open options object (keys in attune.h and docs/embedding.md).
Result<AssistantOptions> ParseAssistantOptions(const std::string& text);

// A "training" object over `base` (the keys it leaves out keep base's values).
Status ReadTrainingOptions(const nlohmann::json& object, const std::string& path, trainer::TrainingRunOptions& base);

// [{"role": ..., "content": ...}, ...]
Result<std::vector<runtime::ChatMessage>> ParseMessages(const std::string& text);

// {"external_power", "battery_percent", "idle_minutes", "temperature_c", "local_hour"}
Result<trainer::DeviceState> ParseDeviceState(const std::string& text);

}  // namespace attune::capi
