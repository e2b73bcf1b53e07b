// attune eval: fact recall, retention and forgetting of an adapter version on
// a questions file (attune/eval.h, docs/eval.md).
#include <iomanip>
#include <iostream>
#include <sstream>

#include "attune/assistant.h"
#include "attune/core/file.h"
#include "attune/eval.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"

namespace attune::cli {
namespace {

struct EvalFlags {
  std::string questions, adapter, model, report, chat_template;
  int max_tokens = 40;
};

std::string Fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

nlohmann::json ToJson(const eval::EvalReport& r, const std::string& report_path) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& x : r.results) {
    results.push_back({{"kind", x.kind}, {"question", x.question}, {"expect", x.expect},
                       {"base_reply", x.base_reply}, {"adapted_reply", x.adapted_reply},
                       {"base_right", x.base_right}, {"adapted_right", x.adapted_right}});
  }
  return {{"questions", r.set_name}, {"adapter_version", r.adapter_version}, {"adapter_label", r.adapter_label},
          {"recall_before", r.recall_before}, {"recall", r.recall}, {"trained_recall", r.trained_recall},
          {"retention", r.retention}, {"forgetting_kl", r.forgetting_kl},
          {"heldout", {{"total", r.heldout}, {"base_right", r.heldout_base}, {"adapted_right", r.heldout_adapted}}},
          {"trained", {{"total", r.trained}, {"base_right", r.trained_base}, {"adapted_right", r.trained_adapted}}},
          {"general",
           {{"total", r.general}, {"known", r.known}, {"retained", r.retained}, {"in_scope", r.general_in_scope}}},
          {"seconds", r.seconds}, {"report", report_path}, {"results", results}};
}

int RunEval(const GlobalOptions& g, const EvalFlags& f) {
  auto set = eval::LoadQuestions(f.questions);
  if (!set.ok()) return PrintError(set.status());
  auto model = runtime::ResolveModelPath(f.model);
  if (!model.ok()) return PrintError(model.status());
  AssistantOptions o;
  o.data_dir = g.data_dir;
  o.model_path = *model;
  o.chat_template = f.chat_template;
  o.background_training = false;  // judging only: no window opens
  auto a = Assistant::Open(o);
  if (!a.ok()) return PrintError(a.status());
  eval::EvalOptions eo;
  eo.adapter = f.adapter;
  eo.max_tokens = f.max_tokens;
  eo.on_progress = [](int done, int total) {
    if (done == total || done % 10 == 0) std::cerr << "attune: eval " << done << "/" << total << " replies" << std::endl;
  };
  auto r = eval::Evaluate(**a, *set, eo);
  if (!r.ok()) return PrintError(r.status());
  const std::string report =
      f.report.empty() ? "eval-" + r->set_name + "-" + r->adapter_label + ".html" : f.report;
  const std::string html = eval::HtmlPage("Attune eval", eval::ReportHtmlSections(*r));
  if (Status s = WriteFileAtomic(report, html); !s.ok()) return PrintError(s.WithContext("writing the report"));
  if (g.json) {
    PrintJson(ToJson(*r, report));
    return kExitOk;
  }
  std::cout << "questions " << r->set_name << ", adapter " << r->adapter_label << "\n"
            << "  held-out recall   " << Fixed(r->recall_before, 0) << "% -> " << Fixed(r->recall, 0) << "% ("
            << r->heldout_adapted << " of " << r->heldout << ")\n"
            << "  taught phrasings  " << Fixed(r->trained_recall, 0) << "% (" << r->trained_adapted << " of " << r->trained
            << ")\n"
            << "  retention         " << Fixed(r->retention, 0) << "% (" << r->retained << " of the " << r->known
            << " general questions the base answers right, of " << r->general << ")\n"
            << "  forgetting KL     " << Fixed(r->forgetting_kl, 3) << " nats/token\n";
  if (!r->adapter_version.empty() && r->general_in_scope < r->general) {
    std::cout << "  scope             the adapter answers " << r->general_in_scope << " of the " << r->general
              << " general questions, the base the others\n";
  }
  bool header = false;
  for (const auto& x : r->results) {
    const bool missed = x.kind == "general" ? x.base_right && !x.adapted_right : !x.adapted_right;
    if (!missed) continue;
    if (!header) std::cout << "misses:\n";
    header = true;
    std::string reply = x.adapted_reply.substr(0, 70);
    for (char& c : reply) {
      if (c == '\n') c = ' ';
    }
    std::cout << "  [" << x.kind << "] " << x.question << "  ->  " << reply << "\n";
  }
  std::cout << "report: " << report << "\n";
  return kExitOk;
}

}  // namespace

void AddEvalCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static EvalFlags f;
  CLI::App* e = app.add_subcommand(
      "eval", "Fact recall, retention and forgetting of an adapter on a questions file (docs/eval.md)");
  e->add_option("--questions", f.questions, "Questions file (JSON; docs/eval.md; examples/personas/)")
      ->required()
      ->check(NonEmptyValue());
  e->add_option("--adapter", f.adapter, "Version judged: vN, an id, or base (default: the active one)")
      ->check(NonEmptyValue());
  e->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
      ->check(NonEmptyValue());
  e->add_option("--chat-template", f.chat_template, "Override the chat template: chatml or llama3")
      ->check(CLI::IsMember({"chatml", "llama3"}));
  e->add_option("--max-tokens", f.max_tokens, "Tokens per reply, greedy (default: 40)")->check(CLI::Range(1, 4096));
  e->add_option("--report", f.report, "HTML report to write (default: eval-<questions>-<version>.html here)")
      ->check(NonEmptyValue());
  AddCommonFlags(e, g);
  e->callback(Run(r, [&] { return RunEval(g, f); }));
}

}  // namespace attune::cli
