// Shared plumbing for the `attune` subcommands: exit codes, error printing,
// JSON output. Commands use only the modules' public headers.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

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

// Prints `j` as one line of JSON to stdout.
void PrintJson(const nlohmann::json& j);

// Wraps a command body so that its int result becomes the process exit code.
inline std::function<void()> Run(CommandResult& result, std::function<int()> body) {
  return [&result, body = std::move(body)]() { result.exit_code = body(); };
}

// Adds --data-dir and --json to a subcommand.
void AddCommonFlags(CLI::App* cmd, GlobalOptions& g);

// One registration function per command family (one file each).
void AddModelCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddGenerateCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddFeedbackCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddAdaptersCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddTrainCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddDemoCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);
void AddServeCommands(CLI::App& app, GlobalOptions& g, CommandResult& r);

}  // namespace attune::cli
