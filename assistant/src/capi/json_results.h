// C++ results -> the JSON outputs of the C ABI (shapes in attune.h).
#pragma once

#include <nlohmann/json.hpp>

#include "attune/assistant.h"

namespace attune::capi {

nlohmann::json ReplyToJson(const ChatReply& reply);
nlohmann::json TrainResultToJson(const trainer::TrainingRunResult& result);
nlohmann::json StatusToJson(const AssistantStatus& status);
nlohmann::json ForgetToJson(const ForgetReport& report);
nlohmann::json ExportToJson(const ExportResult& result);
nlohmann::json ImportToJson(const ImportResult& result);
nlohmann::json SyncToJson(const SyncResult& result);

// Serialises for the caller. Invalid UTF-8 in a string (model output is
// whole characters, but be safe) is replaced rather than thrown.
std::string Dump(const nlohmann::json& value);

}  // namespace attune::capi
