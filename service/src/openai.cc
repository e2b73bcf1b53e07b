#include "service/src/openai.h"

#include <random>
#include <set>

namespace attune::service {

using nlohmann::json;

json ApiError::ToJson() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

ApiError BadField(const std::string& param, const std::string& message) {
  ApiError e;
  e.param = param;
  e.message = param + ": " + message;
  return e;
}

std::optional<std::string> AdapterFromModel(const std::string& model) {
  if (model == "attune") return std::string();
  const std::string prefix = "attune:";
  if (model.rfind(prefix, 0) != 0 || model.size() == prefix.size()) return std::nullopt;
  return model.substr(prefix.size());
}

namespace {

std::optional<ApiError> ParseContent(const json& c, const std::string& field, std::string* out) {
  if (c.is_string()) {
    *out = c.get<std::string>();
    return std::nullopt;
  }
  if (!c.is_array()) return BadField(field, "must be a string or an array of text parts");
  // Multi-part content: only text parts (this model reads text only).
  for (size_t j = 0; j < c.size(); ++j) {
    const std::string pf = field + "[" + std::to_string(j) + "]";
    const json& part = c[j];
    if (!part.is_object() || !part.contains("type") || part["type"] != "text") {
      return BadField(pf + ".type", "only \"text\" parts are supported");
    }
    if (!part.contains("text") || !part["text"].is_string()) return BadField(pf + ".text", "must be a string");
    *out += part["text"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& body, const RequestLimits& limits, ChatRequest* out) {
  if (!body.contains("messages")) return BadField("messages", "is required");
  const json& ms = body["messages"];
  if (!ms.is_array() || ms.empty()) return BadField("messages", "must be a non-empty array");
  if (ms.size() > size_t(limits.max_messages)) {
    return BadField("messages", "has " + std::to_string(ms.size()) + " messages; the limit is " +
                                    std::to_string(limits.max_messages));
  }
  for (size_t i = 0; i < ms.size(); ++i) {
    const std::string f = "messages[" + std::to_string(i) + "]";
    const json& m = ms[i];
    if (!m.is_object()) return BadField(f, "must be an object");
    if (!m.contains("role") || !m["role"].is_string()) return BadField(f + ".role", "is required (a string)");
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for system
    if (role != "system" && role != "user" && role != "assistant") {
      return BadField(f + ".role", "'" + role + "' is not one of system, developer, user, assistant");
    }
    runtime::ChatMessage cm{role, ""};
    if (!m.contains("content") || m["content"].is_null()) return BadField(f + ".content", "is required");
    if (auto e = ParseContent(m["content"], f + ".content", &cm.content)) return e;
    out->messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

std::optional<ApiError> ParseStop(const json& s, std::vector<std::string>* out) {
  if (s.is_null()) return std::nullopt;
  if (s.is_string()) {
    out->push_back(s.get<std::string>());
  } else if (s.is_array() && s.size() <= 4) {
    for (const auto& x : s) {
      if (!x.is_string()) return BadField("stop", "must be a string or up to 4 strings");
      out->push_back(x.get<std::string>());
    }
  } else {
    return BadField("stop", "must be a string or up to 4 strings");
  }
  for (const auto& x : *out) {
    if (x.empty()) return BadField("stop", "must not contain an empty string");
  }
  return std::nullopt;
}

std::optional<ApiError> ParseMaxTokens(const json& body, const RequestLimits& limits, int* out) {
  *out = limits.default_max_tokens;
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    const json& v = body[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > limits.max_tokens_limit) {
      return BadField(key, "must be an integer in 1.." + std::to_string(limits.max_tokens_limit));
    }
    *out = int(v.get<int64_t>());
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<ApiError> ParseSampling(const json& body, runtime::SamplingOptions* s) {
  // OpenAI's default temperature is 1; 0 here means greedy decoding.
  s->temperature = 1.0f;
  if (body.contains("temperature") && !body["temperature"].is_null()) {
    const json& t = body["temperature"];
    if (!t.is_number() || t.get<double>() < 0 || t.get<double>() > 2) {
      return BadField("temperature", "must be a number in 0..2");
    }
    s->temperature = t.get<float>();
  }
  if (body.contains("top_p") && !body["top_p"].is_null()) {
    const json& p = body["top_p"];
    if (!p.is_number() || p.get<double>() <= 0 || p.get<double>() > 1) {
      return BadField("top_p", "must be a number in (0, 1]");
    }
    s->top_p = p.get<float>();
  }
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) return BadField("seed", "must be an integer");
    s->seed = uint64_t(body["seed"].get<int64_t>());
  } else if (s->temperature > 0) {
    s->seed = std::random_device{}();
  }
  return std::nullopt;
}

// Fields accepted and ignored because their neutral value is what we do.
bool IsNeutral(const std::string& key, const json& v) {
  if (key == "user" || key == "metadata" || key == "store") return true;
  if (key == "frequency_penalty" || key == "presence_penalty") return v.is_null() || (v.is_number() && v == 0);
  if (key == "logprobs" || key == "parallel_tool_calls") return v.is_null() || v == false;
  return false;
}

const std::set<std::string>& KnownFields() {
  static const std::set<std::string> k = {"model", "messages", "stream", "stream_options", "temperature", "top_p",
                                          "max_tokens", "max_completion_tokens", "stop", "seed", "n", "user"};
  return k;
}

}  // namespace

std::optional<ApiError> ParseChatRequest(const json& body, const RequestLimits& limits, ChatRequest* out) {
  if (!body.is_object()) return BadField("body", "must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    if (!KnownFields().count(k) && !IsNeutral(k, v)) return BadField(k, "is not supported by this server");
  }
  if (!body.contains("model") || !body["model"].is_string()) return BadField("model", "is required (a string)");
  out->model = body["model"].get<std::string>();
  auto adapter = AdapterFromModel(out->model);
  if (!adapter) {
    ApiError e;
    e.status = 404;
    e.param = "model";
    e.code = "model_not_found";
    e.message = "The model '" + out->model + "' does not exist (hint: attune, attune:base or attune:vN; see /v1/models)";
    return e;
  }
  out->adapter = *adapter;
  if (auto e = ParseMessages(body, limits, out)) return e;
  if (body.contains("n") && !body["n"].is_null() && body["n"] != 1) return BadField("n", "only n = 1 is supported");
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) return BadField("stream", "must be true or false");
    out->stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return BadField("stream_options", "must be an object");
    for (const auto& [k, v] : so.items()) {
      if (k != "include_usage") return BadField("stream_options." + k, "is not supported");
      if (!v.is_boolean()) return BadField("stream_options.include_usage", "must be true or false");
      out->include_usage = v.get<bool>();
    }
    if (!out->stream) return BadField("stream_options", "is only allowed with stream = true");
  }
  if (body.contains("user") && !body["user"].is_null()) {
    if (!body["user"].is_string()) return BadField("user", "must be a string");
    out->user = body["user"].get<std::string>();
  }
  if (auto e = ParseMaxTokens(body, limits, &out->generation.max_tokens)) return e;
  if (auto e = ParseSampling(body, &out->generation.sampling)) return e;
  if (body.contains("stop")) {
    if (auto e = ParseStop(body["stop"], &out->generation.stop)) return e;
  }
  return std::nullopt;
}

std::string OpenAiFinishReason(const std::string& r) {
  if (r == "length" || r == "context") return "length";
  return "stop";
}

namespace {
json Base(const ReplyHeader& h, const char* object) {
  return {{"id", h.id},
          {"object", object},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", h.system_fingerprint},
          {"attune_adapter_version", h.adapter_version}};
}
json Usage(const TokenUsage& u) {
  return {{"prompt_tokens", u.prompt},
          {"completion_tokens", u.completion},
          {"total_tokens", u.prompt + u.completion},
          {"prompt_tokens_details", {{"cached_tokens", u.cached}}}};
}
}  // namespace

json CompletionJson(const ReplyHeader& h, const std::string& text, const std::string& finish_reason,
                    const TokenUsage& usage) {
  json j = Base(h, "chat.completion");
  j["choices"] = json::array({{{"index", 0},
                               {"message", {{"role", "assistant"}, {"content", text}}},
                               {"logprobs", nullptr},
                               {"finish_reason", finish_reason}}});
  j["usage"] = Usage(usage);
  return j;
}

json ChunkJson(const ReplyHeader& h, const json& delta, const json& finish_reason) {
  json j = Base(h, "chat.completion.chunk");
  j["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}});
  return j;
}

json UsageChunkJson(const ReplyHeader& h, const TokenUsage& usage) {
  json j = Base(h, "chat.completion.chunk");
  j["choices"] = json::array();
  j["usage"] = Usage(usage);
  return j;
}

}  // namespace attune::service
