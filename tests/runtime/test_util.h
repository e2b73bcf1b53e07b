// Helpers shared by runtime tests: fixture paths and the default model.
#pragma once

#include <cstdlib>
#include <string>

#include "attune/core/file.h"
#include "attune/runtime/model_store.h"

namespace attune::testing {

inline std::string Fixture(const std::string& rel) { return std::string(ATTUNE_FIXTURES_DIR) + "/" + rel; }

// The cached default model (the test scripts fetch it first), or "" when
// absent. $ATTUNE_TEST_MODEL overrides.
inline std::string DefaultModel() {
  if (const char* m = std::getenv("ATTUNE_TEST_MODEL"); m && *m) return m;
  std::string p = runtime::DefaultModelPath();
  return PathExists(p) ? p : "";
}

}  // namespace attune::testing
