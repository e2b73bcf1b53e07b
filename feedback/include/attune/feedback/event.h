// Event: one piece of user feedback, as a plain C++ value.
//
// This is the in-memory form of attune.v1.FeedbackEvent
// (proto/attune/v1/feedback.proto). Other modules use this type and never
// the generated protobuf classes; conversion lives in codec.h.
//
// Thread safety: a value type; distinct objects may be used from distinct
// threads without synchronisation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace attune::feedback {

// The schema version this build writes and the newest it reads.
inline constexpr uint32_t kSchemaVersion = 1;

enum class Role { kSystem, kUser, kAssistant, kTool };

// "system", "user", "assistant", "tool".
std::string_view RoleName(Role role);

struct Message {
  Role role = Role::kUser;
  std::string content;
};

enum class Thumb { kUnspecified, kUp, kDown };
enum class ImplicitAction { kUnspecified, kAccepted, kCopied, kRegenerated, kDismissed };

std::string_view ThumbName(Thumb thumb);              // "UP", "DOWN", "THUMB_UNSPECIFIED"
std::string_view ImplicitActionName(ImplicitAction);  // "ACCEPTED", ...

struct Rating {
  Thumb thumb = Thumb::kUnspecified;
};
struct Correction {
  std::string text;
};
struct Preference {
  std::string chosen;
  std::string rejected;
};
struct Demonstration {
  std::string text;
};
struct Implicit {
  ImplicitAction action = ImplicitAction::kUnspecified;
};

// std::monostate means "no signal", which validation rejects.
using Signal = std::variant<std::monostate, Rating, Correction, Preference, Demonstration, Implicit>;

// "none", "rating", "correction", "preference", "demonstration", "implicit".
std::string_view SignalName(const Signal& signal);

struct Attachment {
  std::string mime_type;
  std::string data;  // raw bytes
};

// A point in time as in google.protobuf.Timestamp: seconds since the Unix
// epoch (UTC) and a non-negative nanosecond fraction. {0, 0} means "unset".
struct Timestamp {
  int64_t seconds = 0;
  int32_t nanos = 0;

  bool is_set() const { return seconds != 0 || nanos != 0; }
  friend bool operator==(const Timestamp&, const Timestamp&) = default;
  friend auto operator<=>(const Timestamp&, const Timestamp&) = default;
};

// The current wall-clock time.
Timestamp Now();

// RFC 3339 in UTC, e.g. "2026-11-20T09:15:00Z" (fraction only when non-zero).
std::string FormatTime(const Timestamp& t);

struct Event {
  uint32_t schema_version = kSchemaVersion;
  std::string id;  // idempotency key
  std::string user_id;
  std::string conversation_id;  // optional
  Timestamp time;               // unset: set to "now" by Normalize
  std::vector<Message> context;
  std::string response;
  std::string adapter_version;  // "" = base model
  Signal signal;
  std::vector<Attachment> attachments;
  std::map<std::string, std::string> tags;
};

bool operator==(const Message& a, const Message& b);
bool operator==(const Attachment& a, const Attachment& b);
bool operator==(const Rating& a, const Rating& b);
bool operator==(const Correction& a, const Correction& b);
bool operator==(const Preference& a, const Preference& b);
bool operator==(const Demonstration& a, const Demonstration& b);
bool operator==(const Implicit& a, const Implicit& b);
bool operator==(const Event& a, const Event& b);

}  // namespace attune::feedback
