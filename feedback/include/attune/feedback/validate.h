// Validation and normalisation of feedback events.
//
// Every event from outside (CLI, JSONL import, the C++ API) passes through
// Validate before it is stored. A rejection is an InvalidArgument whose
// message starts with the field path and names the rule, for example
//   "context[2].content: 40000 bytes exceeds max_text_bytes (32768)".
// The limits are documented in docs/feedback.md.
//
// Thread safety: all functions are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "attune/core/status.h"
#include "attune/feedback/event.h"

namespace attune::feedback {

struct Limits {
  // Bytes in `id`, `user_id`, `conversation_id`, `adapter_version`. These
  // are keys: printable ASCII (0x21..0x7e), no spaces.
  // Default: 128.
  size_t max_id_bytes = 128;
  // Bytes in any one text: a context message, the response, a correction,
  // a demonstration, a chosen or rejected answer.
  // Default: 32 KiB.
  size_t max_text_bytes = 32 * 1024;
  // Messages in `context` (at least one is required).
  // Default: 64.
  size_t max_context_messages = 64;
  // Sum of the context messages' bytes.
  // Default: 256 KiB.
  size_t max_context_bytes = 256 * 1024;
  // Attachments per event.
  // Default: 8.
  size_t max_attachments = 8;
  // Bytes of one attachment's data (it must not be empty).
  // Default: 1 MiB.
  size_t max_attachment_bytes = 1024 * 1024;
  // Sum of all attachments' data.
  // Default: 4 MiB.
  size_t max_total_attachment_bytes = 4 * 1024 * 1024;
  // Bytes of a mime type ("type/subtype").
  // Default: 128.
  size_t max_mime_type_bytes = 128;
  // Entries in `tags`.
  // Default: 32.
  size_t max_tags = 32;
  // Bytes of a tag key (non-empty) and of a tag value.
  // Default: 64 and 1024.
  size_t max_tag_key_bytes = 64;
  size_t max_tag_value_bytes = 1024;
  // Earliest accepted `time`, seconds since the Unix epoch.
  // Default: 946684800 (2000-01-01T00:00:00Z).
  int64_t min_time_seconds = 946684800;
  // How far in the future of "now" a `time` may lie (clock skew between
  // the app and this process).
  // Default: 86400 (one day).
  int64_t max_future_seconds = 86400;
};

struct ValidateOptions {
  Limits limits;
  // The clock: fills an unset time and bounds future times.
  // Default: Now() (the system clock).
  std::function<Timestamp()> now;
};

// Checks `event` against every rule and, if it passes, normalises it in
// place: an unset time becomes now(), schema_version 0 becomes
// kSchemaVersion. On failure returns InvalidArgument (FailedPrecondition for
// a schema_version newer than kSchemaVersion) and leaves `event` unchanged.
Status ValidateAndNormalize(Event& event, const ValidateOptions& options = {});

// Checks without changing anything; an unset time is an error here.
Status Validate(const Event& event, const ValidateOptions& options = {});

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most
// U+10FFFF), per RFC 3629 section 4.
bool IsValidUtf8(std::string_view s);

}  // namespace attune::feedback
