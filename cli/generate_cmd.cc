// attune generate | chat
#include "attune/runtime/engine.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"
#include "cli/generate_common.h"

namespace attune::cli {
namespace {

Result<std::unique_ptr<runtime::Engine>> OpenEngine(const GlobalOptions& g, const GenFlags& f) {
  ASSIGN_OR_RETURN(std::string path, runtime::ResolveModelPath(f.model));
  runtime::EngineOptions eo;
  eo.model_path = path;
  eo.chat_template = f.chat_template;
  eo.blas_threads = f.threads;
  eo.weights = f.weights == "fp32" ? runtime::WeightStorage::kFp32 : runtime::WeightStorage::kQuantized;
  ASSIGN_OR_RETURN(auto engine, runtime::Engine::Open(eo));
  RETURN_IF_ERROR(InstallAdapter(g, f.adapter, *engine).WithContext("--adapter " + f.adapter));
  return engine;
}

}  // namespace

void AddGenerateCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static GenFlags f;
  AddGenerateAndChat(app, g, r, f, /*with_weights=*/true, "attune chat", OpenEngine);
}

}  // namespace attune::cli
