// Compiled by check_public_headers.cmake with only the module include
// folders (no LibTorch): what an app writes against attune/assistant.h.
#include "attune/assistant.h"
#include "attune/attune.h"

int ConfigureLikeAnApp() {
  attune::AssistantOptions o;
  o.model_path = "model.gguf";
  o.training.trainer.lora.rank = 8;
  o.training.sample.max_new = 64;
  o.window.min_idle_minutes = 10;
  o.gate.max_forgetting_kl = 0.2;
  o.health.window = 20;
  o.on_progress = [](const attune::trainer::TrainProgress& p) { (void)p.step; };
  o.on_trained = [](const attune::trainer::TrainingRunResult& r) { (void)r.report.steps; };
  attune::Result<std::unique_ptr<attune::Assistant>> (*open)(const attune::AssistantOptions&) =
      &attune::Assistant::Open;
  (void)open;
  return ATTUNE_ABI_VERSION + static_cast<int>(o.training.trainer.lora.rank);
}
