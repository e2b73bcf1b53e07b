// attune generate | chat
#include <unistd.h>

#include <iostream>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"

namespace attune::cli {
namespace {

struct GenFlags {
  std::string model;
  std::string adapter = "active";
  std::string prompt;
  std::string system;
  std::string chat_template;
  bool raw = false;
  int max_tokens = 256;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  int threads = 0;
  std::string weights = "quantized";
};

// Installs the adapter that --adapter names: active (the registry's active
// version, if any), none, a version (vN, id or id prefix) or a payload file.
Status SelectAdapter(const GlobalOptions& g, const std::string& choice, runtime::Engine& engine) {
  if (choice == "none") return Status::Ok();
  const std::string dir = ResolveDataDir(g.data_dir) + "/adapters";
  if (choice != "active" && PathExists(choice) && !PathExists(dir + "/" + choice)) {
    std::string id;
    ASSIGN_OR_RETURN(adapters::Adapter a, adapters::ReadPayloadFile(choice, {}, &id));
    return engine.SetAdapter(a, adapters::ShortVersion(id));
  }
  if (!PathExists(dir)) {
    if (choice == "active") return Status::Ok();
    return NotFoundError("adapter '" + choice + "': there is no adapter registry at " + dir);
  }
  adapters::RegistryOptions ro;
  ro.read_only = true;
  ro.create_if_missing = false;
  ASSIGN_OR_RETURN(auto reg, adapters::Registry::Open(ro, dir));
  std::string version = choice == "active" ? reg->Active() : "";
  if (choice == "active" && version.empty()) return Status::Ok();
  if (version.empty()) {
    ASSIGN_OR_RETURN(version, reg->Resolve(choice));
  }
  ASSIGN_OR_RETURN(adapters::Adapter a, reg->Load(version));
  return engine.SetAdapter(a, reg->Label(version));
}

Result<std::unique_ptr<runtime::Engine>> OpenEngine(const GlobalOptions& g, const GenFlags& f) {
  ASSIGN_OR_RETURN(std::string path, runtime::ResolveModelPath(f.model));
  runtime::EngineOptions eo;
  eo.model_path = path;
  eo.chat_template = f.chat_template;
  eo.blas_threads = f.threads;
  eo.weights = f.weights == "fp32" ? runtime::WeightStorage::kFp32 : runtime::WeightStorage::kQuantized;
  ASSIGN_OR_RETURN(auto engine, runtime::Engine::Open(eo));
  RETURN_IF_ERROR(SelectAdapter(g, f.adapter, *engine).WithContext("--adapter " + f.adapter));
  return engine;
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

int Generate(const GlobalOptions& g, const GenFlags& f) {
  auto engine = OpenEngine(g, f);
  if (!engine.ok()) return PrintError(engine.status());
  runtime::TextCallback stream;
  if (!g.json) stream = [](std::string_view s) { std::cout << s << std::flush; return true; };
  Result<runtime::GenerateResult> res = InvalidArgumentError("unset");
  if (f.raw) {
    res = (*engine)->Complete(f.prompt, ToOptions(f), stream);
  } else {
    std::vector<runtime::ChatMessage> msgs;
    if (!f.system.empty()) msgs.push_back({"system", f.system});
    msgs.push_back({"user", f.prompt});
    res = (*engine)->Chat(msgs, ToOptions(f), stream);
  }
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

int Chat(const GlobalOptions& g, const GenFlags& f) {
  auto engine = OpenEngine(g, f);
  if (!engine.ok()) return PrintError(engine.status());
  std::vector<runtime::ChatMessage> msgs;
  if (!f.system.empty()) msgs.push_back({"system", f.system});
  const bool tty = isatty(0);
  if (tty) std::cerr << "attune chat: type a message, /reset to start over, /exit or Ctrl-D to quit\n";
  std::string line;
  while (true) {
    if (tty) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      msgs.resize(f.system.empty() ? 0 : 1);
      continue;
    }
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    auto res = (*engine)->Chat(msgs, ToOptions(f), [](std::string_view s) { std::cout << s << std::flush; return true; });
    if (!res.ok()) {
      PrintError(res.status());
      msgs.pop_back();
      continue;
    }
    std::cout << "\n";
    msgs.push_back({"assistant", res->text});
  }
  return kExitOk;
}

void AddGenFlags(CLI::App* cmd, GenFlags& f) {
  cmd->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
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
  cmd->add_option("--threads", f.threads, "BLAS threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--weights", f.weights, "Base weights in memory: quantized (the file's blocks) or fp32 (default: quantized)")
      ->check(CLI::IsMember({"quantized", "fp32"}));
}

}  // namespace

void AddGenerateCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static GenFlags f;
  CLI::App* gen = app.add_subcommand("generate", "Answer PROMPT with the model (streams to stdout)");
  AddGenFlags(gen, f);
  gen->add_flag("--raw", f.raw, "Treat PROMPT as raw text: no chat template");
  gen->add_option("PROMPT", f.prompt, "The prompt")->required();
  AddCommonFlags(gen, g);
  gen->callback(Run(r, [&] { return Generate(g, f); }));

  CLI::App* chat = app.add_subcommand("chat", "Multi-turn chat on the terminal");
  AddGenFlags(chat, f);
  AddCommonFlags(chat, g);
  chat->callback(Run(r, [&] { return Chat(g, f); }));
}

}  // namespace attune::cli
