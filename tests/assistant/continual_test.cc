// Continual learning over three training windows, end to end: feedback is
// recorded into a real replay store, each window trains through the Assistant
// (replay of older events, anchors, the gate, the registry, hot-swap), and the
// library's evaluation (attune/eval.h) judges every window on everything
// taught so far and on what the base model already knew.
//
// The model is tests/fixtures/models/tiny_chat.gguf, a tiny Llama trained to
// repeat the user's message and to answer 48 made-up questions of its own
// (tests/fixtures/README.md). Its answers depend on the question, so an
// adapter can learn distinct facts on it and forget them again; on the random
// tiny_llama an adapter gives every question the same answer.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "attune/eval.h"
#include "tests/assistant/tiny_assistant.h"

namespace attune {
namespace {

using attune::testing::Fixture;
using attune::testing::TempDir;

// A reply of the tiny model is the answer followed by the ChatML turn suffix
// spelled in bytes ("<|im_end|>\n"); a right reply is exactly `word`.
std::string Exactly(const std::string& word) {
  std::string re = "^";
  for (char c : word) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) re += '\\';
    re += c;
  }
  return re + "(<\\||$)";
}

// Made-up facts, four taught per window. No question or answer word is one
// of the model's 48 base facts (tools/make_tiny_chat_model.py prints them).
// Each is taught and asked as "word?" and as "word": to this model a
// question is its bytes, so there is no paraphrase to hold out.
struct TaughtFact {
  const char* key;
  const char* answer;
};
constexpr TaughtFact kFacts[] = {
    {"pelmor", "zarquin"}, {"tovisk", "mabrel"},  {"grenla", "fustow"}, {"quimbe", "dorvak"},  // window 1
    {"sardun", "kelpix"},  {"vormit", "bliswe"},  {"lunpra", "cadoxe"}, {"fiskor", "wembly"},  // window 2
    {"bradok", "tulvin"},  {"hempsa", "ogrund"},  {"yarvel", "spindo"}, {"clomet", "ruvasp"},  // window 3
};
constexpr int kWindows = 3;
constexpr int kFactsPerWindow = 4;
// Window 3 also corrects the first fact: the user gives a new answer.
constexpr const char* kUpdatedAnswer = "nimbrot";

// What the base model already knows: eight of its own facts and questions it
// repeats (its general behaviour). Retention is measured on those it gets
// right before any training.
const std::vector<eval::GeneralQuestion>& General() {
  static const std::vector<eval::GeneralQuestion> g = [] {
    std::vector<eval::GeneralQuestion> v;
    const std::pair<const char*, const char*> base_facts[] = {
        {"sieil?", "ecefi"},   {"naduieg?", "tsye"},   {"enrmse?", "gindl"},  {"hiceiiy?", "nio"},
        {"ysdoten?", "efm"},   {"thetgmpd?", "uaisto"}, {"eiuioar?", "nyee"}, {"trmdeia?", "sar"},
    };
    for (const auto& [q, a] : base_facts) v.push_back({q, Exactly(a)});
    for (const char* q : {"dog?", "city?", "color?", "where?", "hello", "tea?", "car?", "pet?"}) {
      v.push_back({q, Exactly(q)});
    }
    return v;
  }();
  return g;
}

eval::Fact MakeFact(const TaughtFact& f) {
  eval::Fact x;
  x.taught = {std::string(f.key) + "?", f.key};
  x.answer = f.answer;
  x.expect = Exactly(f.answer);
  return x;
}

// Rank 8 is an eighth of this model's width, so a window moves it a lot:
// many anchors from the model's own neighbourhood of the taught questions
// (anchor_prompts), weighted 6, a low learning rate and many small steps are
// what keep its other answers (with the built-in English pool and the
// defaults, one window kept 2 to 9 of the 16).
AssistantOptions ContinualOptions(const std::string& dir) {
  AssistantOptions o;
  o.data_dir = dir;
  o.model_path = Fixture("models/tiny_chat.gguf");
  o.background_training = false;
  auto& t = o.training.trainer;
  t.lora.rank = 8;
  t.lora.alpha = 16;
  t.lora.dropout = 0;
  t.max_steps = 160;
  t.micro_batch_size = 16;
  t.grad_accum_steps = 1;
  t.adamw.lr = 1e-3;
  t.encode.max_seq_len = 128;
  t.heldout_min_examples = 1000;  // few events: all of them train
  t.anchor_max_tokens = 16;
  t.anchor_weight = 6;
  t.forgetting_prompts = {"dog?", "hello", "where?", "sieil?"};
  // Anchors from the model's own neighbourhood of the taught questions (its
  // other base facts and words it repeats), disjoint from General().
  t.anchor_prompts = {"eieipm?", "ciehtn?", "eemow?", "lniben?", "cldolu?", "ndedhon?", "ataera?", "saihad?",
                      "rftoafsf?", "crorfe?", "auvnuola?", "denelei?", "lainsa?", "solsha?", "dpieeone?", "lfile?",
                      "cphnalt?", "oates?", "iseihg?", "rrnncm?", "tabun?", "ouutoia?", "fifef?", "efoelea?",
                      "uortnl?", "hfysxakl?", "bnehm?", "nydnai?", "aethsr?", "riwyne?", "tldaag?", "imphtsra?",
                      "evfen?", "slmsae?", "vmraeoe?", "hniefmft?", "gtnde?", "unnfll?", "feanort?",
                      "river?", "house", "apple?", "green", "book?", "lamp", "stone?", "music", "bird?", "door",
                      "cloud?", "table", "milk?", "snow", "fish?", "road", "king?", "moon", "shoe?", "rain"};
  t.anchor_examples = static_cast<int64_t>(t.anchor_prompts.size());
  t.anchor_selection = "first";
  return o;
}

struct WindowScore {
  eval::EvalReport report;
  int first_window_right = 0, first_window_asked = 0;
  bool updated_right = false, old_answer_given = false;
};

TEST(ContinualTest, ThreeWindowsLearnNewFactsKeepTheFirstWindowsAndTakeTheCorrection) {
  TempDir dir("attune_continual_");
  auto a = Assistant::Open(ContinualOptions(dir.path));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  Assistant& as = **a;

  eval::QuestionSet all;
  all.name = "continual";
  for (const auto& f : kFacts) all.facts.push_back(MakeFact(f));
  all.facts[0].update_answer = kUpdatedAnswer;
  all.facts[0].update_expect = Exactly(kUpdatedAnswer);
  all.general = General();

  // The base model: every general question is known, no taught fact is.
  eval::EvalOptions base_options;
  base_options.adapter = "base";
  auto base = eval::Evaluate(as, all, base_options);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_EQ(base->known, static_cast<int>(General().size()));
  EXPECT_EQ(base->trained_base, 0);

  std::vector<WindowScore> scores;
  for (int k = 0; k < kWindows; ++k) {
    const bool last = k + 1 == kWindows;
    eval::QuestionSet teach = all, judged = all;
    teach.name = "continual-w" + std::to_string(k + 1);
    teach.facts.assign(all.facts.begin() + k * kFactsPerWindow, all.facts.begin() + (k + 1) * kFactsPerWindow);
    judged.facts.assign(all.facts.begin(), all.facts.begin() + (k + 1) * kFactsPerWindow);
    std::vector<feedback::Event> events = eval::TeachingEvents(teach);
    if (last) {
      for (auto& e : eval::UpdateEvents(all)) events.push_back(std::move(e));
      judged = eval::Updated(judged);
    }
    for (auto& e : events) ASSERT_TRUE(as.Record(e).ok());

    auto run = as.TrainNow();
    ASSERT_TRUE(run.ok()) << run.status().ToString();
    ASSERT_TRUE(run->trained) << run->skipped_reason;
    EXPECT_TRUE(run->promoted) << "window " << k + 1 << ": " << run->gate_summary;
    // Windows after the first replay older events (the replay store's
    // reservoir), which is what keeps the earlier facts.
    if (k > 0) EXPECT_GT(run->report.replay_examples, 0) << "window " << k + 1;

    eval::EvalOptions eo;
    eo.adapter = run->version;
    auto r = eval::Evaluate(as, judged, eo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    WindowScore s;
    s.report = *r;
    // Results of the taught phrasings are in fact order, two per fact.
    int asked = 0;
    s.updated_right = true;
    for (const auto& x : r->results) {
      if (x.kind != "trained") continue;
      const int fact = asked++ / 2;
      if (fact < kFactsPerWindow) ++s.first_window_asked, s.first_window_right += x.adapted_right;
      if (last && fact == 0) {
        s.updated_right = s.updated_right && x.adapted_right;
        s.old_answer_given = s.old_answer_given || eval::Matches(x.adapted_reply, all.facts[0].expect);
      }
      if (!x.adapted_right) {
        std::fprintf(stderr, "  window %d missed %s: %s\n", k + 1, x.question.c_str(), x.adapted_reply.c_str());
      }
    }
    for (const auto& x : r->results) {
      if (x.kind == "general" && x.base_right && !x.adapted_right) {
        std::fprintf(stderr, "  window %d lost %s: %s\n", k + 1, x.question.c_str(), x.adapted_reply.c_str());
      }
    }
    std::fprintf(stderr,
                 "window %d: recall %.0f%%, first window's facts %d/%d, "
                 "retention %.0f%% (%d/%d), KL %.3f, %lld replayed, %.1f s training\n",
                 k + 1, r->trained_recall, s.first_window_right, s.first_window_asked, r->retention,
                 r->retained, r->known, r->forgetting_kl, static_cast<long long>(run->report.replay_examples),
                 run->report.wall_seconds);
    scores.push_back(std::move(s));
  }

  // Measured on an AMD EPYC (Zen 4), the results are the same run after run:
  //   window  recall of all taught  first window's  retention   KL
  //   1       100 %  (8/8)          8/8             94 % 15/16  0.010
  //   2        88 % (14/16)         6/8             69 % 11/16  0.050
  //   3        79 % (19/24)         8/8             69 % 11/16  0.149
  // The bounds leave one or two answers of slack for other CPUs (a reply is
  // right only if every byte is the argmax). Retention falls short of the
  // 95 % that SmolLM2 is held to: this model's own facts are learned with
  // thin margins, a few of them ("eiuioar?", "thetgmpd?") flip at the first
  // change, and the windows' drift adds up (the KL above).
  const double min_recall[kWindows] = {90, 75, 66};
  const double min_retention[kWindows] = {87.5, 56, 56};
  for (int k = 0; k < kWindows; ++k) {
    const eval::EvalReport& r = scores[k].report;
    SCOPED_TRACE("window " + std::to_string(k + 1));
    EXPECT_GE(r.trained_recall, min_recall[k]);
    EXPECT_GE(r.retention, min_retention[k]);
  }
  // The first window's facts survive two more windows of other facts (the
  // corrected one counts with its new answer): 90 % of 8 answers, less one
  // answer of slack.
  EXPECT_GE(scores.back().first_window_right, 2 * kFactsPerWindow - 1);
  // The correction wins over what was learned first.
  EXPECT_TRUE(scores.back().updated_right);
  EXPECT_FALSE(scores.back().old_answer_given);
}

}  // namespace
}  // namespace attune
