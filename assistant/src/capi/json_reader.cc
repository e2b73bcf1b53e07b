#include "json_reader.h"

namespace attune::capi {

JsonReader::JsonReader(const nlohmann::json& object, std::string path) : object_(object), path_(std::move(path)) {}

const nlohmann::json* JsonReader::Find(const char* key, bool (nlohmann::json::*is_type)() const noexcept,
                                       const char* expected) {
  known_.insert(key);
  auto it = object_.find(key);
  if (it == object_.end()) return nullptr;
  if (!((*it).*is_type)()) {
    if (error_.ok()) {
      error_ = InvalidArgumentError(PathOf(key) + ": expected " + expected + ", got " + it->type_name());
    }
    return nullptr;
  }
  return &*it;
}

void JsonReader::String(const char* key, std::string& out) {
  if (auto* v = Find(key, &nlohmann::json::is_string, "a string")) out = v->get<std::string>();
}

void JsonReader::Bool(const char* key, bool& out) {
  if (auto* v = Find(key, &nlohmann::json::is_boolean, "true or false")) out = v->get<bool>();
}

void JsonReader::Int(const char* key, int64_t& out, int64_t min, int64_t max) {
  auto* v = Find(key, &nlohmann::json::is_number_integer, "an integer");
  if (!v) return;
  auto refuse = [&](const std::string& written) {
    if (error_.ok()) {
      error_ = InvalidArgumentError(PathOf(key) + ": " + written + " is outside [" + std::to_string(min) + ", " +
                                    std::to_string(max) + "]");
    }
  };
  // nlohmann keeps an integer above INT64_MAX as unsigned: over every max.
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
    return refuse(std::to_string(v->get<uint64_t>()));
  }
  const int64_t x = v->get<int64_t>();
  if (x < min || x > max) return refuse(std::to_string(x));
  out = x;
}

void JsonReader::Number(const char* key, double& out) {
  if (auto* v = Find(key, &nlohmann::json::is_number, "a number")) out = v->get<double>();
}

void JsonReader::Strings(const char* key, std::vector<std::string>& out) {
  auto* v = Find(key, &nlohmann::json::is_array, "an array of strings");
  if (!v) return;
  std::vector<std::string> items;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      if (error_.ok()) error_ = InvalidArgumentError(PathOf(key) + "[" + std::to_string(i) + "]: expected a string");
      return;
    }
    items.push_back((*v)[i].get<std::string>());
  }
  out = std::move(items);
}

const nlohmann::json* JsonReader::Object(const char* key) { return Find(key, &nlohmann::json::is_object, "an object"); }

Status JsonReader::Finish() const {
  if (!error_.ok()) return error_;
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (!known_.count(it.key())) return InvalidArgumentError(PathOf(it.key().c_str()) + ": unknown key");
  }
  return Status::Ok();
}

Status ParseJson(const std::string& text, const std::string& what, nlohmann::json& out) {
  try {
    out = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return InvalidArgumentError(what + ": malformed JSON at byte " + std::to_string(e.byte) + " (" + e.what() + ")");
  }
  return Status::Ok();
}

}  // namespace attune::capi
