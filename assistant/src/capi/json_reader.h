// Reads the fields of one JSON object into option structs, checking types
// and refusing keys it was not asked about, so a typo in an app's options is
// an error naming the key instead of a silently ignored setting.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "attune/core/status.h"

namespace attune::capi {

class JsonReader {
 public:
  // `path` names the object in messages ("options.training").
  JsonReader(const nlohmann::json& object, std::string path);

  // Each reads `key` into `out` when present and leaves `out` alone when
  // absent; a wrong type is remembered as the first error.
  void String(const char* key, std::string& out);
  void Bool(const char* key, bool& out);
  void Int(const char* key, int64_t& out, int64_t min, int64_t max);
  void Number(const char* key, double& out);
  void Strings(const char* key, std::vector<std::string>& out);
  template <typename T>
  void Int(const char* key, T& out, int64_t min, int64_t max) {
    int64_t v = static_cast<int64_t>(out);
    Int(key, v, min, max);
    out = static_cast<T>(v);
  }
  // An integer field whose range another check owns: only what T holds.
  template <typename T>
  void Int(const char* key, T& out) {
    static_assert(std::is_signed_v<T> || sizeof(T) < sizeof(int64_t), "T's range must fit int64_t");
    Int(key, out, int64_t(std::numeric_limits<T>::min()), int64_t(std::numeric_limits<T>::max()));
  }
  void Float(const char* key, float& out) {
    double v = out;
    Number(key, v);
    out = static_cast<float>(v);
  }
  // The member object `key`, or null when absent (or not an object: error).
  const nlohmann::json* Object(const char* key);
  std::string PathOf(const char* key) const { return path_ + "." + key; }

  // The first error, or InvalidArgument naming the first unknown key.
  Status Finish() const;

 private:
  const nlohmann::json* Find(const char* key, bool (nlohmann::json::*is_type)() const noexcept, const char* expected);
  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string> known_;
  Status error_;
};

// Parses `text` as one JSON value; InvalidArgument naming `what` and the
// byte offset when malformed.
Status ParseJson(const std::string& text, const std::string& what, nlohmann::json& out);

}  // namespace attune::capi
