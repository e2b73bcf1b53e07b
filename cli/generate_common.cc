#include "cli/generate_common.h"

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"

namespace attune::cli {

Result<std::optional<ChosenAdapter>> ChooseAdapter(const GlobalOptions& g, const std::string& choice) {
  using Chosen = std::optional<ChosenAdapter>;
  if (choice == "none") return Chosen();
  const std::string dir = ResolveDataDir(g.data_dir) + "/adapters";
  if (choice != "active" && PathExists(choice) && !PathExists(dir + "/" + choice)) {
    std::string id;
    ASSIGN_OR_RETURN(adapters::Adapter a, adapters::ReadPayloadFile(choice, {}, &id));
    return Chosen(ChosenAdapter{std::move(a), adapters::ShortVersion(id)});
  }
  if (!PathExists(dir)) {
    if (choice == "active") return Chosen();
    return NotFoundError("adapter '" + choice + "': there is no adapter registry at " + dir);
  }
  adapters::RegistryOptions ro;
  ro.read_only = true;
  ro.create_if_missing = false;
  ASSIGN_OR_RETURN(auto reg, adapters::Registry::Open(ro, dir));
  std::string version = choice == "active" ? reg->Active() : "";
  if (choice == "active" && version.empty()) return Chosen();
  if (version.empty()) {
    ASSIGN_OR_RETURN(version, reg->Resolve(choice));
  }
  ASSIGN_OR_RETURN(adapters::Adapter a, reg->Load(version));
  return Chosen(ChosenAdapter{std::move(a), reg->Label(version)});
}

runtime::GenerateOptions ToOptions(const GenFlags& f) {
  runtime::GenerateOptions o;
  o.max_tokens = f.max_tokens;
  o.sampling.temperature = f.temperature;
  o.sampling.top_p = f.top_p;
  o.sampling.top_k = f.top_k;
  o.sampling.repetition_penalty = f.repetition_penalty;
  o.sampling.seed = f.seed;
  o.stop = f.stop;
  return o;
}

int ReportGeneration(const GlobalOptions& g, const Result<runtime::GenerateResult>& res) {
  if (!res.ok()) return PrintError(res.status());
  if (res->finish_reason == "non_finite") {
    if (!g.json) std::cout << "\n";
    return PrintError(DataLossError("the model produced NaN or Inf logits after " + std::to_string(res->tokens.size()) +
                                    " tokens: the model file or the adapter is broken"));
  }
  double tps = res->decode_seconds > 0 ? res->tokens.size() / res->decode_seconds : 0;
  if (g.json) {
    PrintJson({{"text", res->text}, {"tokens", res->tokens.size()}, {"prompt_tokens", res->prompt_tokens},
               {"finish_reason", res->finish_reason}, {"tokens_per_second", tps},
               {"prefill_seconds", res->prefill_seconds}, {"decode_seconds", res->decode_seconds}, {"adapter_version", res->adapter_version}});
  } else {
    std::cout << "\n";
    if (isatty(2)) {
      std::cerr << "[" << res->tokens.size() << " tokens, " << int(tps * 10) / 10.0 << " tokens/s, " << res->finish_reason
                << ", adapter " << (res->adapter_version.empty() ? "none" : res->adapter_version) << "]\n";
    }
  }
  return kExitOk;
}

void AddGenFlags(CLI::App* cmd, GenFlags& f, bool with_weights) {
  // Without --weights this is attune-run, which reads GGUF files only.
  cmd->add_option("--model", f.model,
                  with_weights ? "GGUF file or Hugging Face directory (default: the cached default model)"
                               : "GGUF file (default: the cached default model)")
      ->check(NonEmptyValue());
  cmd->add_option("--adapter", f.adapter, "active|none|VERSION|PATH (default: active)");
  cmd->add_option("--system", f.system, "System prompt");
  cmd->add_option("--chat-template", f.chat_template, "Override the chat template: chatml or llama3");
  cmd->add_option("--max-tokens", f.max_tokens, "Most tokens to generate (default 256)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temperature", f.temperature, "0 = greedy (default 0)")->check(FiniteNumber())->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", f.top_p, "Nucleus sampling mass (default 1 = off)")->check(FiniteNumber())->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", f.top_k, "Keep the k most likely tokens (default 0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repetition-penalty", f.repetition_penalty, "CTRL repetition penalty (default 1 = off)")
      ->check(FiniteNumber())
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", f.seed, "Sampling seed, 0..2^64-1 (default 0)")->check(CountValue(UINT64_MAX));
  cmd->add_option("--stop", f.stop, "Stop string (repeatable)");
  cmd->add_option("--threads", f.threads, "Compute threads (default: all cores)")->check(CLI::Range(0, 1024));
  if (!with_weights) return;
  cmd->add_option("--weights", f.weights, "Base weights in memory: quantized (the file's blocks) or fp32 (default: quantized)")
      ->check(CLI::IsMember({"quantized", "fp32"}));
}

}  // namespace attune::cli
