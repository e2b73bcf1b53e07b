// Error plumbing of the C ABI: the calling thread's last error message and
// the mapping from Status codes to attune_error.
#pragma once

#include <string>

#include "attune/attune.h"
#include "attune/core/status.h"

namespace attune::capi {

// Records `message` as this thread's last error and returns `code`.
attune_error Fail(attune_error code, std::string message);
// Fail with the code matching `status` and "<where>: <message>".
attune_error FailWith(const Status& status, const std::string& where);
// Clears this thread's last error and returns ATTUNE_OK.
attune_error Succeed();

const char* LastError();
const char* ErrorName(int code);

}  // namespace attune::capi
