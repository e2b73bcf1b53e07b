// The OpenAI chat-completions wire format: request parsing with validation
// (errors name the field) and response / stream-chunk JSON.
// Reference: https://platform.openai.com/docs/api-reference/chat
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "attune/runtime/engine.h"

namespace attune::service {

// An error as OpenAI's clients expect it: {"error": {message, type, param, code}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field, "" when none
  std::string code;   // "" when none
  nlohmann::json ToJson() const;
};

ApiError BadField(const std::string& param, const std::string& message);

struct RequestLimits {
  int max_messages = 256;
  int max_tokens_limit = 4096;
  int default_max_tokens = 256;
};

struct ChatRequest {
  std::string model;    // as sent
  std::string adapter;  // "" = active, "base", or a version ("v3", an id)
  std::vector<runtime::ChatMessage> messages;
  runtime::GenerateOptions generation;
  bool stream = false;
  bool include_usage = false;
  std::string user;  // OpenAI's end-user id; feedback on the reply is stored under it
};

// Fills `out` from a parsed JSON body, or returns the 400/404 to send.
std::optional<ApiError> ParseChatRequest(const nlohmann::json& body, const RequestLimits& limits, ChatRequest* out);

// "attune" -> "", "attune:base" -> "base", "attune:v3" -> "v3"; nullopt for
// names that are not ours.
std::optional<std::string> AdapterFromModel(const std::string& model);

struct ReplyHeader {
  std::string id;                  // the response id feedback refers to
  std::string model;               // echoed
  std::string system_fingerprint;  // "attune:v3" or "attune:base"
  std::string adapter_version;     // full id, "" for the base
  int64_t created = 0;
};

std::string OpenAiFinishReason(const std::string& runtime_reason);

// `usage`: prompt_tokens_details.cached_tokens is what the prompt cache
// restored instead of computing.
struct TokenUsage {
  int prompt = 0, completion = 0, cached = 0;
};

nlohmann::json CompletionJson(const ReplyHeader& h, const std::string& text, const std::string& finish_reason,
                              const TokenUsage& usage);
// One SSE chunk: a delta with `role` (first chunk), `content`, or a finish.
nlohmann::json ChunkJson(const ReplyHeader& h, const nlohmann::json& delta, const nlohmann::json& finish_reason);
nlohmann::json UsageChunkJson(const ReplyHeader& h, const TokenUsage& usage);

}  // namespace attune::service
