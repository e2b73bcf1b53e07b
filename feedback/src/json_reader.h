// The strict JSON reader behind ParseEventJson: it refuses what a lenient
// parser would silently accept or crash on. Internal to feedback/.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "attune/core/result.h"

namespace attune::feedback::internal {

// Parses `text` into `out`. InvalidArgument, naming the byte offset or the
// field, for: more than `max_bytes`, a NUL byte, nesting deeper than
// `max_depth` (checked before the parser builds anything), malformed JSON or
// UTF-8, a key given twice in one object, and two spellings of one field
// (`user_id` and `userId`) in any object except `tags`, whose keys are the
// user's own.
Status ReadStrictJson(std::string_view text, size_t max_bytes, int max_depth, nlohmann::json& out);

// `s` with every byte that is not printable ASCII written as \xNN, so that
// an error message quoting hostile input is always valid UTF-8.
std::string Printable(std::string_view s);

}  // namespace attune::feedback::internal
