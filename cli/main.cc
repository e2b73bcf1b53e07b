// attune: the command-line front end. See DESIGN.md "Command line".
#include <iostream>

#include "cli/cli_common.h"

int main(int argc, char** argv) {
  using namespace attune::cli;
  CLI::App app{"attune: on-device continual learning and LoRA personalization"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "attune 0.1.0");
  GlobalOptions g;
  CommandResult r;
#ifdef ATTUNE_HAVE_RUNTIME_CLI
  AddModelCommands(app, g, r);
  AddGenerateCommands(app, g, r);
  AddTrainCommands(app, g, r);
  AddDemoCommands(app, g, r);
  AddEvalCommands(app, g, r);
  AddServeCommands(app, g, r);
#endif
  AddFeedbackCommands(app, g, r);
  AddAdaptersCommands(app, g, r);
  AddExportCommands(app, g, r);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RequiredError& e) {
    // "A subcommand is required" hides the word that was not one: name it.
    auto rest = app.remaining(/*recurse=*/true);
    if (rest.empty()) {
      app.exit(e);
    } else {
      std::cerr << "attune: error: unknown command '" << rest[0] << "'\nRun with --help for more information.\n";
    }
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return r.exit_code;
}
