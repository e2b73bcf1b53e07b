// What `attune generate|chat` and `attune-run generate|chat` share: the
// flags, the adapter choice, and the two commands over either engine
// (runtime::Engine, or the LibTorch-free runtime::LeanEngine). Header-only
// templates so that attune-run links no LibTorch module.
#pragma once

#include <unistd.h>

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/runtime/engine.h"
#include "cli/cli_common.h"

namespace attune::cli {

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

// The adapter --adapter names: active (the registry's active version, if
// any), none, a version (vN, id or id prefix) or a payload file; nullopt
// when there is none to serve.
struct ChosenAdapter {
  adapters::Adapter adapter;
  std::string label;
};
Result<std::optional<ChosenAdapter>> ChooseAdapter(const GlobalOptions& g, const std::string& choice);

// Installs the chosen adapter on `engine` (either engine type).
template <class E>
Status InstallAdapter(const GlobalOptions& g, const std::string& choice, E& engine) {
  ASSIGN_OR_RETURN(auto chosen, ChooseAdapter(g, choice));
  if (!chosen) return Status::Ok();
  return engine.SetAdapter(chosen->adapter, chosen->label);
}

runtime::GenerateOptions ToOptions(const GenFlags& f);

// The flags both commands take; `with_weights` (attune, not attune-run)
// adds --weights and allows Hugging Face directories in --model's help.
void AddGenFlags(CLI::App* cmd, GenFlags& f, bool with_weights);

// Prints a generation's outcome (text already streamed unless --json).
int ReportGeneration(const GlobalOptions& g, const Result<runtime::GenerateResult>& res);

template <class E>
int RunGenerate(const GlobalOptions& g, const GenFlags& f, const E& engine) {
  runtime::TextCallback stream;
  if (!g.json) stream = [](std::string_view s) { std::cout << s << std::flush; return true; };
  if (f.raw) return ReportGeneration(g, engine.Complete(f.prompt, ToOptions(f), stream));
  std::vector<runtime::ChatMessage> msgs;
  if (!f.system.empty()) msgs.push_back({"system", f.system});
  msgs.push_back({"user", f.prompt});
  return ReportGeneration(g, engine.Chat(msgs, ToOptions(f), stream));
}

template <class E>
int RunChat(const GenFlags& f, const E& engine, const std::string& name) {
  std::vector<runtime::ChatMessage> msgs;
  if (!f.system.empty()) msgs.push_back({"system", f.system});
  const bool tty = isatty(0);
  if (tty) std::cerr << name << ": type a message, /reset to start over, /exit or Ctrl-D to quit\n";
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
    auto res = engine.Chat(msgs, ToOptions(f), [](std::string_view s) { std::cout << s << std::flush; return true; });
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

// Adds `generate` and `chat` to `app`; `open(g, f)` opens the engine
// (Result<std::unique_ptr<Engine or LeanEngine>>).
template <class Open>
void AddGenerateAndChat(CLI::App& app, GlobalOptions& g, CommandResult& r, GenFlags& f, bool with_weights,
                        const std::string& chat_name, Open open) {
  CLI::App* gen = app.add_subcommand("generate", "Answer PROMPT with the model (streams to stdout)");
  AddGenFlags(gen, f, with_weights);
  gen->add_flag("--raw", f.raw, "Treat PROMPT as raw text: no chat template");
  gen->add_option("PROMPT", f.prompt, "The prompt")->required();
  AddCommonFlags(gen, g);
  gen->callback(Run(r, [&g, &f, open] {
    auto engine = open(g, f);
    if (!engine.ok()) return PrintError(engine.status());
    return RunGenerate(g, f, **engine);
  }));
  CLI::App* chat = app.add_subcommand("chat", "Multi-turn chat on the terminal");
  AddGenFlags(chat, f, with_weights);
  AddCommonFlags(chat, g);
  chat->callback(Run(r, [&g, &f, open, chat_name] {
    auto engine = open(g, f);
    if (!engine.ok()) return PrintError(engine.status());
    return RunChat(f, **engine, chat_name);
  }));
}

}  // namespace attune::cli
