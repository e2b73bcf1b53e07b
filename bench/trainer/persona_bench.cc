// Learning quality per persona: for each questions file, a fresh data
// directory, the persona's teaching feedback (one demonstration per taught
// phrasing, plus thumbs-up on three general answers the base gets right, as
// in the demo), one training window with the demo's settings (or the levers
// given), then attune/eval.h: held-out recall, recall on the taught
// phrasings, retention (also without the three upvoted general answers,
// which the window trained on), forgetting KL. Prints a table row (or JSON) per
// persona; docs/trainer.md's lever table comes from runs of this program.
//
//   persona_bench --model M.gguf [--steps 40] [--lr 2e-3] [--rank 16]
//                 [--alpha 32] [--targets q,k,v,o,gate,up,down]
//                 [--anchors 32] [--anchor-selection nearest|first]
//                 [--anchor-weight 1] [--anchor-tokens 48] [--contrast-anchors 16] [--neftune 0]
//                 [--question-dropout 2] [--question-dropout-p 0.3] [--question-dropout-weight 0.5]
//                 [--question-dropout-min-words 6]
//                 [--l2-parent 0] [--lr-schedule constant] [--seed 0] [--candidate-scale 1] [--null-space 0.97] [--early-stopping 0] [--eval-every 5] [--base-products auto] [--bf16-base] [--no-checkpointing] [--graph-memory 768] [--windows 1] [--json]
//                 PERSONA.json ...
//
// With --windows N the facts are taught in N windows in a row (a third of
// them each for N = 3), the last window also teaching the facts' updates
// ("update" in the questions file: the user moved city); after each window
// the candidate is judged on every fact taught so far (updated answers after
// the last), with the first window's facts counted apart.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attune/assistant.h"
#include "attune/eval.h"
#include "attune/trainer/lora_params.h"

namespace {

using namespace attune;

struct Flags {
  std::string model;
  std::vector<std::string> personas;
  trainer::TrainerOptions t;
  std::optional<double> replay_ratio;  // --replay-ratio; unset keeps the default
  std::optional<double> replay_loss_floor;  // --replay-loss-floor: the gate's; unset keeps the default
  int windows = 1;
  std::string forget_other;  // --forget: the other user's persona
  bool json = false;
};

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "persona_bench: " << why
            << "\nusage: persona_bench --model M [--steps N] [--lr X] [--rank R] [--alpha A] [--targets LIST]"
               " [--anchors N] [--anchor-selection first|nearest] [--anchor-weight W] [--anchor-margin-boost B] [--scope] [--anchor-tokens N] [--contrast-anchors N] [--neftune ALPHA] [--question-dropout COPIES] [--question-dropout-p P] [--question-dropout-weight W] [--question-dropout-min-words N] [--l2-parent L] [--lr-schedule constant|linear] [--seed S] [--candidate-scale S] [--null-space E] [--early-stopping PATIENCE] [--eval-every STEPS] [--base-products auto|fp32|bf16] [--bf16-base] [--no-checkpointing] [--graph-memory MB] [--replay-ratio R] [--replay-loss-floor F] [--windows N] [--forget OTHER.json] [--json] PERSONA.json ...\n";
  std::exit(2);
}

double Number(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(d)) Usage(flag + " needs a number, got '" + v + "'");
  return d;
}

Flags Parse(int argc, char** argv) {
  Flags f;
  f.t = eval::MeasuredWindow();  // the full demo's window
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") f.model = value();
    else if (a == "--steps") f.t.max_steps = int64_t(Number(a, value()));
    else if (a == "--lr") f.t.adamw.lr = Number(a, value());
    else if (a == "--rank") f.t.lora.rank = int64_t(Number(a, value()));
    else if (a == "--alpha") f.t.lora.alpha = Number(a, value());
    else if (a == "--anchors") f.t.anchor_examples = int64_t(Number(a, value()));
    else if (a == "--anchor-selection") f.t.anchor_selection = value();
    else if (a == "--anchor-weight") f.t.anchor_weight = Number(a, value());
    else if (a == "--anchor-margin-boost") f.t.anchor_margin_boost = Number(a, value());
    else if (a == "--scope") f.t.scope = true;
    else if (a == "--early-stopping") f.t.early_stopping_patience = int64_t(Number(a, value()));
    else if (a == "--eval-every") f.t.eval_every_steps = int64_t(Number(a, value()));
    else if (a == "--contrast-anchors") f.t.contrast_anchors = int64_t(Number(a, value()));
    else if (a == "--neftune") f.t.neftune_alpha = Number(a, value());
    else if (a == "--question-dropout") f.t.question_dropout_copies = int64_t(Number(a, value()));
    else if (a == "--question-dropout-p") f.t.question_dropout_p = Number(a, value());
    else if (a == "--question-dropout-weight") f.t.question_dropout_weight = Number(a, value());
    else if (a == "--question-dropout-min-words") f.t.question_dropout_min_words = int64_t(Number(a, value()));
    else if (a == "--anchor-tokens") f.t.anchor_max_tokens = int64_t(Number(a, value()));
    else if (a == "--l2-parent") f.t.l2_to_parent = Number(a, value());
    else if (a == "--lr-schedule") f.t.lr_schedule = value();
    else if (a == "--seed") f.t.seed = uint64_t(Number(a, value()));
    else if (a == "--candidate-scale") f.t.candidate_scale = Number(a, value());
    else if (a == "--null-space") f.t.null_space_energy = Number(a, value());
    else if (a == "--bf16-base") f.t.base_products = "bf16";
    else if (a == "--base-products") f.t.base_products = value();
    else if (a == "--no-checkpointing") f.t.gradient_checkpointing = false;
    else if (a == "--graph-memory") f.t.graph_memory_mb = Number(a, value());
    else if (a == "--replay-ratio") f.replay_ratio = Number(a, value());
    else if (a == "--replay-loss-floor") f.replay_loss_floor = Number(a, value());
    else if (a == "--windows") f.windows = int(Number(a, value()));
    else if (a == "--forget") f.forget_other = value();
    else if (a == "--targets") {
      auto t = trainer::ParseTargets(value());
      if (!t.ok()) Usage(t.status().message());
      f.t.lora.targets = *t;
    } else if (a == "--json") f.json = true;
    else if (a == "--help" || a == "-h") Usage("learning quality per persona");
    else if (!a.empty() && a[0] == '-') Usage("unknown flag " + a);
    else f.personas.push_back(a);
  }
  if (f.model.empty()) Usage("--model is required");
  if (f.personas.empty()) Usage("give at least one persona file");
  if (f.windows < 1 || f.windows > 10) Usage("--windows must be 1..10");
  if (f.replay_ratio && *f.replay_ratio < 0) Usage("--replay-ratio must be >= 0");
  if (f.replay_loss_floor && *f.replay_loss_floor < 0) Usage("--replay-loss-floor must be >= 0");
  return f;
}

// A persona's questions and an Assistant on a fresh data directory (removed
// when it goes), or null after printing why.
struct Persona {
  std::optional<eval::QuestionSet> set;
  std::string dir;
  std::unique_ptr<Assistant> assistant;
  ~Persona() {
    assistant.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

std::unique_ptr<Persona> OpenPersona(const Flags& f, const std::string& path) {
  auto p = std::make_unique<Persona>();
  auto set = eval::LoadQuestions(path);
  if (!set.ok()) {
    std::cerr << "persona_bench: " << set.status().ToString() << "\n";
    return nullptr;
  }
  p->set = std::move(*set);
  p->dir =
      (std::filesystem::temp_directory_path() / ("persona-bench-" + std::to_string(std::random_device{}()))).string();
  AssistantOptions o;
  o.data_dir = p->dir;
  o.model_path = f.model;
  o.background_training = false;
  o.training.trainer = f.t;
  if (f.replay_ratio) o.training.sample.replay_ratio = *f.replay_ratio;
  if (f.replay_loss_floor) o.gate.replay_loss_floor = *f.replay_loss_floor;
  auto a = Assistant::Open(o);
  if (!a.ok()) {
    std::cerr << "persona_bench: " << a.status().ToString() << "\n";
    return nullptr;
  }
  p->assistant = std::move(*a);
  return p;
}

// What went wrong, for reading: general answers lost, facts missed.
void AddMisses(const eval::EvalReport& r, nlohmann::json* j) {
  for (const auto& x : r.results) {
    if (x.kind == "general" && x.base_right && !x.adapted_right) (*j)["lost"].push_back({x.question, x.adapted_reply});
    if (x.kind == "heldout" && !x.adapted_right) (*j)["missed"].push_back({x.question, x.adapted_reply});
  }
}

int RunOne(const Flags& f, const std::string& path) {
  auto persona = OpenPersona(f, path);
  if (!persona) return 1;
  const eval::QuestionSet* set = &*persona->set;
  Assistant& as = *persona->assistant;
  eval::EvalOptions eo;
  eo.on_progress = [&](int done, int total) {
    if (done == total) std::cerr << "persona_bench: " << set->name << ": " << total << " replies\n";
  };
  auto base = eval::AnswerAll(as, *set, "base", eo);
  if (!base.ok()) {
    std::cerr << "persona_bench: " << base.status().ToString() << "\n";
    return 1;
  }
  int events = 0;
  for (auto& e : eval::TeachingEvents(*set)) events += as.Record(e).ok();
  // Thumbs-up on three general answers the base model gets right. The
  // window trains on them, so retention is also given without them.
  auto upvoted = eval::UpvoteKnownGeneral(as, *set, *base);
  if (!upvoted.ok()) {
    std::cerr << "persona_bench: " << upvoted.status().ToString() << "\n";
    return 1;
  }
  events += int(upvoted->size());
  const auto t0 = std::chrono::steady_clock::now();
  auto run = as.TrainNow();
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!run.ok()) {
    std::cerr << "persona_bench: training " << set->name << ": " << run.status().ToString() << "\n";
    return 1;
  }
  // The candidate is judged whether or not the gate promoted it.
  eo.adapter = run->version.empty() ? "base" : run->version;
  eo.base_replies = &*base;
  eo.trained_general = *upvoted;
  auto r = eval::Evaluate(as, *set, eo);
  if (!r.ok()) {
    std::cerr << "persona_bench: " << r.status().ToString() << "\n";
    return 1;
  }
  if (f.json) {
    nlohmann::json j = {{"persona", set->name}, {"facts", set->facts.size()}, {"events", events},
                        {"untrained_known", r->untrained_known}, {"untrained_retained", r->untrained_retained},
                        {"untrained_retention", r->untrained_retention},
                        {"recall_before", r->recall_before}, {"recall", r->recall},
                        {"trained_recall", r->trained_recall}, {"retention", r->retention},
                        {"known", r->known}, {"retained", r->retained}, {"forgetting_kl", r->forgetting_kl},
                        {"general_in_scope", r->general_in_scope},
                        {"gate_forgetting_kl", run->report.forgetting_kl}, {"promoted", run->promoted},
                        {"train_seconds", train_seconds}, {"trainer_seconds", run->report.wall_seconds},
                        {"phase_seconds",
                         {{"prepare", run->report.prepare_seconds}, {"parent", run->report.parent_seconds},
                          {"steps", run->report.steps_seconds}, {"candidate", run->report.candidate_seconds}}},
                        {"trainer_peak_rss_mb", run->report.peak_rss_mb},
                        {"tokens", run->report.tokens}, {"padding_tokens", run->report.padding_tokens},
                        {"shared_prefix_tokens", run->report.shared_prefix_tokens},
                        {"steps", run->report.steps}, {"kept_step", run->report.kept_step},
                        {"heldout_curve", run->report.heldout_curve}, {"notes", run->report.notes}};
    AddMisses(*r, &j);
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::printf("%-8s %5zu %6d  %5.0f%% -> %5.0f%%  %5.0f%%  %5.0f%% (%d/%d)  %5.0f%% (%d/%d)  %7.3f  %6.0f s  %s\n",
                set->name.c_str(), set->facts.size(), events, r->recall_before, r->recall, r->trained_recall,
                r->retention, r->retained, r->known, r->untrained_retention, r->untrained_retained, r->untrained_known,
                r->forgetting_kl, train_seconds, run->promoted ? "promoted" : "rejected");
    std::fflush(stdout);
  }
  return 0;
}

// Facts taught over f.windows windows; one row per window.
int RunWindows(const Flags& f, const std::string& path) {
  auto persona = OpenPersona(f, path);
  if (!persona) return 1;
  const eval::QuestionSet* set = &*persona->set;
  eval::WindowsOptions wo;
  wo.windows = f.windows;
  auto rows = eval::RunWindows(*persona->assistant, *set, wo, [&](const eval::WindowResult& w) {
    const eval::EvalReport& r = w.report;
    const bool last = w.window == f.windows;
    const double first_recall = w.first_window_asked ? 100.0 * w.first_window_right / w.first_window_asked : 0.0;
    nlohmann::json j = {{"persona", set->name}, {"window", w.window}, {"windows", f.windows},
                        {"facts_so_far", w.facts_so_far}, {"recall", r.recall},
                        {"first_window_recall", first_recall}, {"first_window_facts", w.first_window_facts},
                        {"trained_recall", r.trained_recall}, {"retention", r.retention}, {"known", r.known},
                        {"retained", r.retained}, {"forgetting_kl", r.forgetting_kl}, {"general_in_scope", r.general_in_scope},
                        {"promoted", w.run.promoted},
                        {"gate", w.run.gate_summary}, {"train_seconds", w.train_seconds},
                        {"trainer_seconds", w.run.report.wall_seconds}};
    if (last) {
      j["updated"] = {{"right", w.updated_right}, {"asked", w.updated_asked}, {"old_answer_given", w.old_answer_given}};
    }
    AddMisses(r, &j);
    if (f.json) {
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else {
      std::printf("%-8s window %d/%d: recall %5.0f%% (first window's facts %5.0f%%), retention %5.0f%% (%d/%d), KL %.3f,"
                  " %.0f s, %s", set->name.c_str(), w.window, f.windows, r.recall, first_recall, r.retention,
                  r.retained, r.known, r.forgetting_kl, w.train_seconds, w.run.promoted ? "promoted" : "rejected");
      if (last) std::printf(", updated %d/%d (old answer %d)", w.updated_right, w.updated_asked, w.old_answer_given);
      std::printf("\n");
      std::fflush(stdout);
    }
  });
  if (!rows.ok()) {
    std::cerr << "persona_bench: " << rows.status().ToString() << "\n";
    return 1;
  }
  return 0;
}

// Two users taught together, one forgotten, the other kept (--forget).
int RunForget(const Flags& f, const std::string& path) {
  auto persona = OpenPersona(f, path);
  if (!persona) return 1;
  auto other = eval::LoadQuestions(f.forget_other);
  if (!other.ok()) {
    std::cerr << "persona_bench: " << other.status().ToString() << "\n";
    return 1;
  }
  const eval::QuestionSet& forgotten = *persona->set;
  eval::QuestionSet kept = *other;
  if (kept.user == forgotten.user) kept.user = forgotten.user + "-other";
  Assistant& as = *persona->assistant;
  for (const eval::QuestionSet* set : {&forgotten, static_cast<const eval::QuestionSet*>(&kept)}) {
    for (auto& e : eval::TeachingEvents(*set)) {
      auto id = as.Record(e);
      if (!id.ok()) {
        std::cerr << "persona_bench: feedback refused: " << id.status().ToString() << "\n";
        return 1;
      }
    }
  }
  auto judge = [&](const std::string& stage, const std::string& version, double seconds, bool promoted) -> bool {
    nlohmann::json j = {{"stage", stage}, {"forgotten_user", forgotten.name}, {"kept_user", kept.name},
                        {"version", version}, {"train_seconds", seconds}, {"promoted", promoted}};
    for (const eval::QuestionSet* set : {&forgotten, static_cast<const eval::QuestionSet*>(&kept)}) {
      eval::EvalOptions eo;
      eo.adapter = version.empty() ? "base" : version;
      auto r = eval::Evaluate(as, *set, eo);
      if (!r.ok()) {
        std::cerr << "persona_bench: " << r.status().ToString() << "\n";
        return false;
      }
      const char* key = set == &forgotten ? "forgotten" : "kept";
      j[key] = nlohmann::json{{"recall_before", r->recall_before}, {"recall", r->recall},
                              {"trained_recall", r->trained_recall}, {"retention", r->retention},
                              {"forgetting_kl", r->forgetting_kl}};
    }
    if (f.json) {
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else {
      std::printf("%-22s %-8s forgotten user (%s): recall %3.0f%% (base %3.0f%%)  kept user (%s): recall %3.0f%% (base %3.0f%%)\n",
                  stage.c_str(), version.empty() ? "base" : version.substr(0, 8).c_str(), forgotten.name.c_str(),
                  j["forgotten"]["recall"].get<double>(), j["forgotten"]["recall_before"].get<double>(),
                  kept.name.c_str(), j["kept"]["recall"].get<double>(), j["kept"]["recall_before"].get<double>());
      std::fflush(stdout);
    }
    return true;
  };
  auto window = [&](const std::string& stage) -> bool {
    const auto t0 = std::chrono::steady_clock::now();
    auto run = as.TrainNow();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!run.ok() || !run->trained) {
      std::cerr << "persona_bench: " << stage << ": " << (run.ok() ? run->skipped_reason : run.status().ToString()) << "\n";
      return false;
    }
    return judge(stage, run->version, seconds, run->promoted);
  };
  if (!window("both users taught")) return 1;
  auto gone = as.ForgetUser(eval::TeachingEvents(forgotten).front().user_id);
  if (!gone.ok()) {
    std::cerr << "persona_bench: forget: " << gone.status().ToString() << "\n";
    return 1;
  }
  if (!judge("after forget", gone->active_version, 0, true)) return 1;
  if (!window("after retraining")) return 1;
  // No stored version may have been trained on the forgotten user's events.
  std::set<std::string> erased;
  for (const auto& e : eval::TeachingEvents(forgotten)) erased.insert(e.id);
  int tainted = 0, stored = 0;
  for (const auto& v : as.registry().List()) {
    auto a = as.registry().Load(v.id);
    if (!a.ok()) continue;  // retired: payload deleted
    ++stored;
    for (const auto& id : a->lineage) tainted += int(erased.count(id));
  }
  std::cerr << "persona_bench: " << stored << " stored versions, " << tainted
            << " lineage entries naming a forgotten event\n";
  return tainted == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = Parse(argc, argv);
  if (!f.json && f.windows == 1 && f.forget_other.empty()) {
    std::printf("%-8s %5s %6s  %-17s  %6s  %-14s  %-14s  %7s  %8s  %s\n", "persona", "facts", "events",
                "held-out recall", "taught", "retention", "not upvoted", "KL", "training", "gate");
  }
  int rc = 0;
  for (const auto& p : f.personas) {
    rc |= !f.forget_other.empty() ? RunForget(f, p) : f.windows > 1 ? RunWindows(f, p) : RunOne(f, p);
  }
  return rc;
}
