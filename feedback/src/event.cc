#include "attune/feedback/event.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace attune::feedback {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
  }
  return "unknown";
}

std::string_view ThumbName(Thumb thumb) {
  switch (thumb) {
    case Thumb::kUp:
      return "UP";
    case Thumb::kDown:
      return "DOWN";
    case Thumb::kUnspecified:
      break;
  }
  return "THUMB_UNSPECIFIED";
}

std::string_view ImplicitActionName(ImplicitAction action) {
  switch (action) {
    case ImplicitAction::kAccepted:
      return "ACCEPTED";
    case ImplicitAction::kCopied:
      return "COPIED";
    case ImplicitAction::kRegenerated:
      return "REGENERATED";
    case ImplicitAction::kDismissed:
      return "DISMISSED";
    case ImplicitAction::kUnspecified:
      break;
  }
  return "ACTION_UNSPECIFIED";
}

std::string_view SignalName(const Signal& signal) {
  static constexpr std::string_view kNames[] = {"none",       "rating",        "correction",
                                                "preference", "demonstration", "implicit"};
  return kNames[signal.index()];
}

Timestamp Now() {
  auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  return Timestamp{ns / 1000000000, static_cast<int32_t>(ns % 1000000000)};
}

std::string FormatTime(const Timestamp& t) {
  std::time_t secs = static_cast<std::time_t>(t.seconds);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (t.nanos != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%09d", t.nanos);
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out + "Z";
}

bool operator==(const Message& a, const Message& b) { return a.role == b.role && a.content == b.content; }
bool operator==(const Attachment& a, const Attachment& b) { return a.mime_type == b.mime_type && a.data == b.data; }
bool operator==(const Rating& a, const Rating& b) { return a.thumb == b.thumb; }
bool operator==(const Correction& a, const Correction& b) { return a.text == b.text; }
bool operator==(const Preference& a, const Preference& b) { return a.chosen == b.chosen && a.rejected == b.rejected; }
bool operator==(const Demonstration& a, const Demonstration& b) { return a.text == b.text; }
bool operator==(const Implicit& a, const Implicit& b) { return a.action == b.action; }

bool operator==(const Event& a, const Event& b) {
  return a.schema_version == b.schema_version && a.id == b.id && a.user_id == b.user_id &&
         a.conversation_id == b.conversation_id && a.time == b.time && a.context == b.context &&
         a.response == b.response && a.adapter_version == b.adapter_version && a.signal == b.signal &&
         a.attachments == b.attachments && a.tags == b.tags;
}

}  // namespace attune::feedback
