// Shared plumbing for the `attune` subcommands: exit codes, error printing,
// JSON output. Commands use only the modules' public headers.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <istream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attune/core/status.h"

namespace attune::cli {

// Exit codes of DESIGN.md: 0 success, 1 error, 2 bad usage.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Options every subcommand understands.
struct GlobalOptions {
  std::string data_dir;  // --data-dir; empty: $ATTUNE_HOME or ~/.local/share/attune
  bool json = false;     // --json
};

// Holds the exit code that the chosen subcommand's callback produced.
struct CommandResult {
  int exit_code = kExitOk;
};

// Prints "attune: error: <message>" (and the hint, if any) to stderr; returns 1.
int PrintError(const Status& status);

// Prints `j` as one line of JSON to stdout. Never throws: bytes that are not
// UTF-8 (a file name, a model's metadata) are written as U+FFFD.
void PrintJson(const nlohmann::json& j);

// Wraps a command body so that its int result becomes the process exit code.
inline std::function<void()> Run(CommandResult& result, std::function<int()> body) {
  return [&result, body = std::move(body)]() { result.exit_code = body(); };
}

// Adds --data-dir and --json to a subcommand.
void AddCommonFlags(CLI::App* cmd, GlobalOptions& g);

// Adds --data-dir alone. An empty value is a usage error (exit 2), not "the
// default": `--data-dir "$UNSET_VARIABLE"` must not touch the real data.
CLI::Option* AddDataDirFlag(CLI::App* cmd, GlobalOptions& g);

// Validators for option values (a failed check is a usage error, exit 2).
// A path that must not be empty.
const CLI::Validator& NonEmptyValue();
// A count: decimal digits only (no sign, no blank), at most `max`.
CLI::Validator CountValue(uint64_t max);
// A number that is not NaN or infinite (CLI11's range checks let NaN pass).
const CLI::Validator& FiniteNumber();
// Parses a value that CountValue accepted.
uint64_t ParseCount(const std::string& text);

// Reads all of `in` into `out`, refusing (InvalidArgument naming `what` and
// the limit) input longer than `max_bytes` without reading past it + 1.
Status ReadCapped(std::istream& in, size_t max_bytes, const std::string& what, std::string* out);

// Reads one line (without its '\n') of at most `max_bytes`. Returns false at
// the end of input. A longer line sets `too_long` and stops reading there:
// the caller must stop, as the rest of the line cannot be told from the next.
bool ReadLineCapped(std::istream& in, size_t max_bytes, std::string* line, bool* too_long);

// One registration function per command family (one file each).
void AddModelCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddGenerateCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddFeedbackCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddAdaptersCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddTrainCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddDemoCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddEvalCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddExportCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);

// Writes a signed tombstone for adapter versions built from erased events;
// the next `attune sync` publishes it (export_cmd.cc).
Status RecordErasureForSync(const GlobalOptions& g, const std::vector<std::string>& versions, const std::string& reason);
void AddServeCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);

}  // namespace attune::cli
