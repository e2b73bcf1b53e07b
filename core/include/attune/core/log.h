// Minimal leveled logging to stderr. Thread-safe (one write per line).
#pragma once

#include <sstream>
#include <string>

namespace attune {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below `level` are dropped. Default: kWarning, or $ATTUNE_LOG
// (debug|info|warning|error) when set.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogLine(LogLevel level, const std::string& line);

}  // namespace attune

#define ATTUNE_LOG(level, expr)                                             \
  do {                                                                      \
    if (::attune::LogLevel::level >= ::attune::GetLogLevel()) {             \
      std::ostringstream attune_log_os_;                                    \
      attune_log_os_ << expr;                                               \
      ::attune::LogLine(::attune::LogLevel::level, attune_log_os_.str());   \
    }                                                                       \
  } while (0)
