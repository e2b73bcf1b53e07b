#include "cli/cli_common.h"

#include <iostream>

namespace attune::cli {

int PrintError(const Status& status) {
  std::cerr << "attune: error: " << status.message() << "\n";
  return kExitError;
}

void PrintJson(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

void AddCommonFlags(CLI::App* cmd, GlobalOptions& g) {
  cmd->add_option("--data-dir", g.data_dir,
                  "Data directory (default: $ATTUNE_HOME or ~/.local/share/attune)");
  cmd->add_flag("--json", g.json, "Machine-readable JSON output");
}

}  // namespace attune::cli
