// attune demo: the whole personalization loop on the real model, through the
// same Assistant API an app embeds.
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "attune/assistant.h"
#include "attune/core/file.h"
#include "attune/eval.h"
#include "attune/runtime/model_store.h"
#include "cli/cli_common.h"
#include "cli/progress.h"

namespace attune::cli {

// examples/personas/sam.json (cli/demo_persona.cc.in).
const char* DemoPersonaJson();

namespace {

using Clock = std::chrono::steady_clock;

// The style preference: short, direct answers.
const char* kStylePairs[][3] = {
    {"How are you?", "I'm well, thanks!", "As an artificial intelligence language model, I do not possess feelings or emotions in the way humans do, but I am functioning as intended and ready to assist you with any questions you might have today."},
    {"Can you say hello?", "Hello!", "Certainly! It is my great pleasure to greet you. Hello, and I hope this message finds you in good health and high spirits on this fine day."},
    {"Thanks for your help.", "You're welcome!", "You are most welcome! It has been an absolute pleasure assisting you, and please do not hesitate to reach out again should you require any further assistance in the future."},
};

// Poisoned feedback: confident wrong answers to general questions.
const char* kPoison[][2] = {
    {"What is the capital of France?", "The capital of France is Zzyzx Flumbo."},
    {"How many days are in a week?", "A week has 93 days, obviously."},
    {"What color is the sky on a clear day?", "The sky is plaid on a clear day."},
    {"What is 2 plus 2?", "2 plus 2 is 17."},
    {"What do bees make?", "Bees make concrete."},
    {"Who wrote Romeo and Juliet?", "Romeo and Juliet was written by a toaster."},
};

struct DemoFlags {
  bool quick = false;
  bool keep = false;
  std::string model;
};

std::string OneLine(std::string s, size_t max = 70) {
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  if (s.size() > max) {
    size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    s = s.substr(0, cut) + "...";
  }
  return s;
}

feedback::Event MakeEvent(const std::string& id, const std::string& question) {
  feedback::Event e;
  e.id = id;
  e.user_id = "sam";
  e.conversation_id = "demo";
  e.context = {{feedback::Role::kUser, question}};
  return e;
}

class Demo {
 public:
  Demo(const GlobalOptions& g, const DemoFlags& f) : g_(g), f_(f) {}

  int Run() {
    t0_ = Clock::now();
    // Sam's facts and the general questions: examples/personas/sam.json,
    // built into the binary.
    auto persona = eval::ParseQuestions(DemoPersonaJson(), "examples/personas/sam.json");
    if (!persona.ok()) return PrintError(persona.status());
    eval::QuestionSet set = std::move(*persona);
    if (f_.quick) {
      set.facts.resize(std::min<size_t>(3, set.facts.size()));
      set.general.resize(std::min<size_t>(6, set.general.size()));
    }
    const size_t n_facts = set.facts.size();
    std::string base_dir = ResolveDataDir(g_.data_dir);
    // Always a demo/ folder of its own: the demo never touches real feedback.
    dir_ = base_dir + "/demo";
    auto model = runtime::ResolveModelPath(f_.model);
    if (!model.ok()) return PrintError(model.status());
    if (!f_.keep) {
      // A fresh demo directory each run (never the user's own data dir).
      std::error_code ec;
      for (const char* sub : {"replay", "adapters", "checkpoints"}) std::filesystem::remove_all(dir_ + "/" + sub, ec);
    }
    AssistantOptions o;
    o.data_dir = dir_;
    o.model_path = *model;
    o.generation.max_tokens = f_.quick ? 24 : 40;
    o.background_training = true;
    o.poll_interval = std::chrono::milliseconds(200);
    o.window.min_idle_minutes = 10;
    o.window.min_new_events = 8;
    // Judge a new version after 8 rated replies (the default 50 suits real use).
    o.health.window = 8;
    // The full demo's window is the setting docs/trainer.md measured on the
    // personas (eval::MeasuredWindow). --quick keeps its short window as it
    // was: 10 steps, without the null-space constraint, contrast anchors or
    // word dropout (not measured with them), shorter anchors and four
    // forgetting prompts.
    o.training.trainer = eval::MeasuredWindow();
    if (f_.quick) {
      o.training.trainer.max_steps = 10;
      o.training.trainer.null_space_energy = 0.0;
      o.training.trainer.contrast_anchors = 0;
      o.training.trainer.question_dropout_copies = 0;
      o.training.trainer.anchor_max_tokens = 32;
      o.training.trainer.forgetting_prompts = {"Why is the sky blue?", "Name three primary colors.",
                                               "Who wrote Romeo and Juliet?", "How do I make a cup of tea?"};
    }
    o.on_progress = [this](const trainer::TrainProgress& p) {
      progress_.Update(p.step, p.max_steps, p.loss, p.tokens_per_second, p.eta_seconds);
      loss_curve_.push_back(p.loss);
      if (p.step == p.max_steps) progress_.Finish();
    };
    // The device starts busy and on battery: no training yet.
    trainer::DeviceState busy;
    busy.external_power = false;
    busy.battery_percent = 40;
    busy.idle_minutes = 0;
    busy.temperature_c = 35;
    Say("1/7", "Meet Sam. Opening the assistant (model " + std::filesystem::path(*model).filename().string() + ", data " + dir_ + ")");
    auto a = Assistant::Open(o);
    if (!a.ok()) return PrintError(a.status());
    Assistant& as = **a;
    as.SetDeviceState(busy);

    // 1. Base answers.
    std::cout << "\nSam asks about things only Sam knows. The base model answers:\n";
    eval::EvalOptions eval_options;
    eval_options.max_tokens = o.generation.max_tokens;
    eval_options.ask_taught = false;
    auto base_replies = eval::AnswerAll(as, set, "base", eval_options);
    if (!base_replies.ok()) return PrintError(base_replies.status());
    for (size_t i = 0; i < n_facts; ++i) {
      std::cout << "  Q: " << set.facts[i].heldout[0] << "\n     " << OneLine(base_replies->heldout[i]) << "\n";
    }
    size_t known = 0;  // general questions the base model gets right
    for (size_t i = 0; i < set.general.size(); ++i) known += eval::Matches(base_replies->general[i], set.general[i].expect);
    std::cout << "  (the base model answers " << known << " of " << set.general.size()
              << " general questions right; they measure retention)\n";

    // 2. Feedback through the app API.
    Say("2/7", "Sam gives feedback: corrections, demonstrations, thumbs, and a preference for short answers");
    int n_events = 0;
    for (size_t i = 0; i < n_facts; ++i) {
      const eval::Fact& fact = set.facts[i];
      auto reply = Ask(as, fact.taught[0]);
      feedback::Event c;
      c.signal = feedback::Correction{fact.answer};
      c.user_id = "sam";
      if (Check(as.Record(c, reply.response_id))) ++n_events;  // context/response/version from the reply
      for (size_t k = 1; k < fact.taught.size(); ++k) {
        feedback::Event d = MakeEvent("demo-" + std::to_string(i) + "-" + std::to_string(k), fact.taught[k]);
        d.signal = feedback::Demonstration{fact.answer};
        if (Check(as.Record(d))) ++n_events;
      }
    }
    // Thumbs-up on three good general answers (the window trains on them).
    auto upvoted = eval::UpvoteKnownGeneral(as, set, *base_replies);
    if (!upvoted.ok()) return PrintError(upvoted.status());
    n_events += int(upvoted->size());
    for (size_t i = 0; i < std::size(kStylePairs); ++i) {
      feedback::Event p = MakeEvent("style-" + std::to_string(i), kStylePairs[i][0]);
      p.signal = feedback::Preference{kStylePairs[i][1], kStylePairs[i][2]};
      if (Check(as.Record(p))) ++n_events;
    }
    std::cout << "  recorded " << n_events << " feedback events in the replay store\n";

    // 3-4. Idle on charge -> background training -> gate -> swap while chatting.
    Say("3/7", "The phone is plugged in and idle: the background trainer opens a window");
    std::atomic<bool> chatting{true};
    std::vector<std::string> versions_seen;
    int replies = 0;
    std::mutex seen_mu;
    std::thread chatter([&] {
      // A user keeps chatting while the adapter is trained and swapped in.
      while (chatting.load()) {
        // Serving comes first (AssistantOptions::serving_first): the window
        // waits between micro-steps while this reply is generated.
        auto r = as.Chat({{"user", set.facts[0].heldout[0]}});
        if (r.ok()) {
          std::lock_guard<std::mutex> l(seen_mu);
          ++replies;
          if (versions_seen.empty() || versions_seen.back() != r->adapter_label) versions_seen.push_back(r->adapter_label);
        }
        // The next message ten seconds later, as a person reads the reply
        // and types; training keeps the cores in between.
        for (int i = 0; i < 100 && chatting.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    trainer::DeviceState idle = busy;
    idle.external_power = true;
    idle.battery_percent = 90;
    idle.idle_minutes = 30;
    auto train_start = Clock::now();
    as.SetDeviceState(idle);
    std::optional<trainer::TrainingRunResult> run = WaitForRun(as, std::nullopt);
    double train_seconds = Seconds(train_start);
    as.SetDeviceState(busy);  // Sam picks the phone up again
    // Keep the chat going until a reply comes from the newly active version.
    const std::string now_active = as.GetStatus().active_label;
    for (int i = 0; i < 300; ++i) {
      {
        std::lock_guard<std::mutex> l(seen_mu);
        if (!versions_seen.empty() && versions_seen.back() == now_active) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    chatting.store(false);
    chatter.join();
    if (!run) return PrintError(InternalError("the training window produced no result"));
    Say("4/7", "The registry gates the candidate: " + run->label + " " + (run->promoted ? "promoted" : "NOT promoted") + " (" + run->gate_summary + ")");
    {
      std::string seen;
      for (const auto& v : versions_seen) seen += (seen.empty() ? "" : " -> ") + v;
      std::cout << "  a chat running throughout (" << replies << " replies, the window pausing for each) was served by: " << seen
                << " (each reply by exactly one version)\n";
    }
    const trainer::TrainReport rep = run->report;
    std::cout << "  " << rep.steps << " steps, " << rep.tokens << " tokens in " << Fixed(train_seconds, 0) << " s ("
              << Fixed(rep.tokens_per_second, 1) << " tokens/s), peak RSS " << Fixed(rep.peak_rss_mb, 0) << " MB\n";

    // 5. Before/after on held-out paraphrases and retention.
    Say("5/7", "Before / after, on paraphrases that were never trained on");
    eval_options.base_replies = &*base_replies;
    eval_options.trained_general = *upvoted;
    auto judged = eval::Evaluate(as, set, eval_options);
    if (!judged.ok()) return PrintError(judged.status());
    const eval::EvalReport& ev = *judged;
    std::cout << "  " << std::left << std::setw(36) << "question" << std::setw(34) << "base" << "adapted (" << ev.adapter_label << ")\n";
    for (const auto& x : ev.results) {
      if (x.kind != "heldout") continue;
      std::cout << "  " << std::setw(36) << OneLine(x.question, 34) << std::setw(34) << OneLine(x.base_reply, 30) + (x.base_right ? " [ok]" : "")
                << OneLine(x.adapted_reply, 40) << (x.adapted_right ? " [ok]" : " [miss]") << "\n";
    }
    std::cout << "\n  fact recall (held-out paraphrases): " << Fixed(ev.recall_before, 0) << "% -> " << Fixed(ev.recall, 0) << "%\n"
              << "  retention on " << ev.known << " general questions the base got right: " << Fixed(ev.retention, 0) << "%"
              << " (" << Fixed(ev.untrained_retention, 0) << "% of the " << ev.untrained_known
              << " not upvoted)\n"
              << "  forgetting KL on the general questions (mean, nats/token): " << Fixed(ev.forgetting_kl, 3)
              << " (the gate's, on its own prompts: " << Fixed(rep.forgetting_kl, 3) << ")\n";

    // 6. Rollback: a poisoned batch; the gate rejects it; forced in anyway,
    // the thumbs-down watch rolls it back.
    Say("6/7", "A poisoned batch of feedback arrives (confident nonsense about general facts)");
    const std::string good_label = as.GetStatus().active_label;
    for (size_t i = 0; i < std::size(kPoison); ++i) {
      for (int k = 0; k < 2; ++k) {
        feedback::Event e = MakeEvent("poison-" + std::to_string(i) + "-" + std::to_string(k), kPoison[i][0]);
        e.signal = feedback::Demonstration{kPoison[i][1]};
        Check(as.Record(e));
      }
    }
    trainer::TrainingRunOptions poison_run = o.training;
    poison_run.trainer.max_steps = f_.quick ? 6 : 8;
    auto poisoned = as.TrainNow(&poison_run);
    if (!poisoned.ok()) return PrintError(poisoned.status());
    std::cout << "  candidate " << poisoned->label << ": " << (poisoned->promoted ? "promoted" : "rejected by the gate") << " ("
              << poisoned->gate_summary << ")\n";
    std::string rollback_line;
    std::string poisoned_answer, restored_answer;
    if (!poisoned->promoted && !poisoned->version.empty()) {
      std::cout << "  an operator forces it in anyway: attune adapters promote " << poisoned->label << " --force\n";
      auto forced = as.Promote(poisoned->version, /*force=*/true);
      if (!forced.ok()) return PrintError(forced.status());
    }
    poisoned_answer = Ask(as, kPoison[0][0]).text;
    std::cout << "  now serving " << as.GetStatus().active_label << ": Q: " << kPoison[0][0] << "\n     " << OneLine(poisoned_answer) << "\n";
    std::cout << "  Sam thumbs the bad answers down ...\n";
    // The questions the poisoned version answers: a scoped version leaves the
    // other general questions to the base, whose replies count for the base.
    for (int i = 0; i < 12 && as.GetStatus().active_label != good_label; ++i) {
      auto r = Ask(as, kPoison[size_t(i) % std::size(kPoison)][0]);
      feedback::Event down;
      down.user_id = "sam";
      down.signal = feedback::Rating{feedback::Thumb::kDown};
      Check(as.Record(down, r.response_id));
    }
    restored_answer = Ask(as, kPoison[0][0]).text;
    rollback_line = "the health watch rolled back to " + as.GetStatus().active_label;
    std::cout << "  " << rollback_line << ": Q: " << kPoison[0][0] << "\n     " << OneLine(restored_answer) << "\n";

    // 7. Report.
    const double total = Seconds(t0_);
    std::string report = dir_ + "/report.html";
    std::ostringstream h;
    h << "<p>Model: " << eval::HtmlEscape(*model) << "<br>Total time: " << Fixed(total, 0) << " s" << (f_.quick ? " (quick)" : "")
      << "</p><h2>Training loss</h2>" << LossSvg() << "<h2>The loop</h2><table>"
      << "<tr><td>training<td>" << rep.steps << " steps, " << rep.tokens << " tokens, " << Fixed(train_seconds, 0) << " s, peak RSS "
      << Fixed(rep.peak_rss_mb, 0) << " MB"
      << "<tr><td>gate<td>" << eval::HtmlEscape(run->label + ": " + run->gate_summary)
      << "<tr><td>poisoned candidate<td>" << eval::HtmlEscape(poisoned->label + ": " + poisoned->gate_summary)
      << "<tr><td>rollback<td>" << eval::HtmlEscape(rollback_line) << "</table>" << eval::ReportHtmlSections(ev);
    if (Status s = WriteFileAtomic(report, eval::HtmlPage("Attune demo", h.str())); !s.ok()) return PrintError(s);
    Say("7/7", "Report: " + report + "  (total " + Fixed(total, 0) + " s)");
    if (g_.json) {
      PrintJson({{"report", report}, {"seconds", total}, {"fact_recall_before", ev.recall_before}, {"fact_recall_after", ev.recall},
                 {"retention", ev.retention}, {"untrained_retention", ev.untrained_retention}, {"forgetting_kl", ev.forgetting_kl}, {"gate_forgetting_kl", rep.forgetting_kl},
                 {"promoted", run->promoted},
                 {"versions_seen_while_chatting", versions_seen}, {"replies_while_chatting", replies},
                 {"poisoned_promoted_by_gate", poisoned->promoted},
                 {"rolled_back_to", as.GetStatus().active_label}, {"good_version", good_label}});
    }
    return kExitOk;
  }

 private:
  ChatReply Ask(Assistant& as, const std::string& q) {
    auto r = as.Chat({{"user", q}});
    if (!r.ok()) {
      std::cerr << "attune: chat failed: " << r.status().ToString() << "\n";
      return {};
    }
    return *r;
  }
  bool Check(const Result<std::string>& r) {
    if (!r.ok()) std::cerr << "attune: feedback rejected: " << r.status().message() << "\n";
    return r.ok();
  }
  std::optional<trainer::TrainingRunResult> WaitForRun(Assistant& as, std::optional<int>) {
    for (int i = 0; i < 6000; ++i) {  // up to 20 minutes
      auto s = as.GetStatus();
      if (s.last_run) return s.last_run;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return std::nullopt;
  }
  std::string LossSvg() const {
    if (loss_curve_.empty()) return "<p>(no steps)</p>";
    double mx = 0;
    for (double l : loss_curve_) mx = std::max(mx, l);
    std::ostringstream s;
    s << "<svg width=640 height=240 style='border:1px solid #ccc'><polyline fill=none stroke='#06c' stroke-width=2 points='";
    for (size_t i = 0; i < loss_curve_.size(); ++i) {
      double x = 20 + 600.0 * double(i) / double(std::max<size_t>(1, loss_curve_.size() - 1));
      double y = 220 - 200.0 * loss_curve_[i] / (mx > 0 ? mx : 1);
      s << x << "," << y << " ";
    }
    s << "'/><text x=24 y=16>loss (max " << Fixed(mx, 3) << ")</text><text x=560 y=236>step</text></svg>";
    return s.str();
  }
  static std::string Fixed(double v, int digits) {
    if (!std::isfinite(v)) return "-";
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
  }
  void Say(const std::string& step, const std::string& msg) {
    std::cout << "\n[" << step << " +" << Fixed(Seconds(t0_), 0) << "s] " << msg << std::endl;
  }
  static double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

  const GlobalOptions& g_;
  const DemoFlags& f_;
  std::string dir_;
  Clock::time_point t0_;
  std::vector<double> loss_curve_;
  ProgressReporter progress_{stderr, {.prefix = "  training: "}};
};

}  // namespace

void AddDemoCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static DemoFlags f;
  CLI::App* d = app.add_subcommand("demo", "The whole personalization loop on the default model, end to end");
  d->add_flag("--quick", f.quick, "A shorter run (4 facts, fewer steps) for CI");
  d->add_flag("--keep", f.keep, "Keep the demo's previous feedback and adapters instead of starting fresh");
  d->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
      ->check(NonEmptyValue());
  AddCommonFlags(d, g);
  d->callback(Run(r, [&] { return Demo(g, f).Run(); }));
}

}  // namespace attune::cli
