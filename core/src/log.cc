#include "attune/core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace attune {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("ATTUNE_LOG");
  if (!env) return LogLevel::kWarning;
  if (!std::strcmp(env, "debug")) return LogLevel::kDebug;
  if (!std::strcmp(env, "info")) return LogLevel::kInfo;
  if (!std::strcmp(env, "error")) return LogLevel::kError;
  return LogLevel::kWarning;
}

std::atomic<int>& Level() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}

}  // namespace

void SetLogLevel(LogLevel level) { Level().store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(Level().load()); }

void LogLine(LogLevel level, const std::string& line) {
  static const char* kNames[] = {"debug", "info", "warning", "error"};
  std::string out = std::string("attune ") + kNames[static_cast<int>(level)] + ": " + line + "\n";
  // One write() per line keeps lines from different threads whole.
  ssize_t ignored = ::write(2, out.data(), out.size());
  (void)ignored;
}

}  // namespace attune
