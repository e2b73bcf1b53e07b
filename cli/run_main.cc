// attune-run: generation without LibTorch, for serving processes that must
// stay small. `attune-run generate|chat` take the flags of `attune
// generate|chat` (but --weights: the weights always stay quantized) and give
// the same replies on GGUF files; Hugging Face directories and everything
// else are `attune`'s. See docs/runtime.md "LibTorch-free serving".
#include <iostream>

#include "attune/runtime/lean_engine.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"
#include "cli/generate_common.h"

namespace attune::cli {
namespace {

Result<std::unique_ptr<runtime::LeanEngine>> OpenLeanEngine(const GlobalOptions& g, const GenFlags& f) {
  ASSIGN_OR_RETURN(std::string path, runtime::ResolveModelPath(f.model));
  runtime::LeanEngineOptions o;
  o.model_path = path;
  o.chat_template = f.chat_template;
  o.threads = f.threads;
  ASSIGN_OR_RETURN(auto engine, runtime::LeanEngine::Open(o));
  RETURN_IF_ERROR(InstallAdapter(g, f.adapter, *engine).WithContext("--adapter " + f.adapter));
  return engine;
}

}  // namespace
}  // namespace attune::cli

int main(int argc, char** argv) {
  using namespace attune::cli;
  CLI::App app{"attune-run: answer with a GGUF model and its adapter, without LibTorch (a small serving process)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "attune-run 0.1.0");
  GlobalOptions g;
  CommandResult r;
  GenFlags f;
  AddGenerateAndChat(app, g, r, f, /*with_weights=*/false, "attune-run chat", OpenLeanEngine);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return r.exit_code;
}
