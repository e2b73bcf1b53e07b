// Conversions between Event and its two serialised forms:
//  - JSON: protobuf's JSON mapping of attune.v1.FeedbackEvent, one event per
//    line in JSONL files (see docs/feedback.md for an example);
//  - binary: the protobuf wire format, which the replay store keeps.
//
// Parsing checks syntax and types only; call Validate (validate.h) before
// trusting an event. Thread safety: all functions are thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "attune/core/result.h"
#include "attune/feedback/event.h"

namespace attune::feedback {

inline constexpr size_t kMaxEventJsonBytes = size_t{16} << 20;
inline constexpr int kMaxEventJsonDepth = 32;

struct JsonParseOptions {
  // Accept (and drop) fields this build does not know. Off, an unknown field
  // is an InvalidArgument naming it, which catches typos.
  // Default: false.
  bool ignore_unknown_fields = false;
  // Most bytes of JSON in one event. The largest valid event (4 MiB of
  // attachments in base64, 256 KiB of context written as six-byte escapes)
  // is about 8 MiB. See docs/limits.md.
  // Default: 16 MiB.
  size_t max_bytes = kMaxEventJsonBytes;
  // Deepest nesting of objects and arrays. A valid event nests 3 levels
  // ({"context": [{...}]}); the cap is checked before parsing, so hostile
  // input cannot exhaust the stack.
  // Default: 32.
  int max_depth = kMaxEventJsonDepth;
};

// Parses one JSON object. An empty or missing "time" leaves time unset.
// Errors: InvalidArgument naming the field or offset and what was wrong
// (malformed JSON or UTF-8, a NUL byte, more than max_bytes, nesting deeper
// than max_depth, a key given twice or two spellings of one field such as
// user_id and userId, unknown field, wrong type, unknown enum value, two
// signals, a time that is not RFC 3339). Messages quote input bytes that are
// not printable ASCII as backslash-x escapes, so they are always valid UTF-8.
Result<Event> ParseEventJson(std::string_view json, const JsonParseOptions& options = {});

// One line of JSON (no trailing newline) with snake_case field names.
// Fields with default values are left out, except "id" and "user_id".
std::string EventToJson(const Event& event);

// Protobuf wire format of the event.
std::string SerializeEvent(const Event& event);

// Inverse of SerializeEvent. DataLoss if `bytes` is not a FeedbackEvent or
// contains a value this build cannot represent (unknown role, enum value).
Result<Event> ParseEvent(std::string_view bytes);

}  // namespace attune::feedback
