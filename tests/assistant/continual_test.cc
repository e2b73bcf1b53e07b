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
#include <vector>

#include "attune/eval.h"
#include "tests/assistant/tiny_assistant.h"

namespace attune {
namespace {

using attune::testing::Fixture;
using attune::testing::TempDir;

// A reply of the tiny model is the answer followed by the ChatML turn suffix
// spelled in bytes ("<|im_end|>\n"); a right reply is exactly `word`.
std::string Exactly(const std::string& word) { return "^" + eval::Literal(word) + "(<\\||$)"; }

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
// (anchor_prompts), weighted 24, a low learning rate and many small steps
// are what keep its other answers (with the built-in English pool and the
// defaults, one window kept 2 to 9 of the 16). docs/trainer.md has the
// lever table these settings come from.
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
  t.anchor_weight = 24;
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
  // (The default replay ratio, 2, replays every earlier event: a window here
  // has 8 new events and at most 16 old ones.)
  return o;
}

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

  // Four facts a window (12 facts, 3 windows); the model has no paraphrases,
  // so the taught phrasings are what is judged.
  eval::WindowsOptions wo;
  wo.windows = kWindows;
  wo.kind = "trained";
  auto windows = eval::RunWindows(as, all, wo, [](const eval::WindowResult& w) {
    const eval::EvalReport& r = w.report;
    for (const auto& x : r.results) {
      if (x.kind == "trained" && !x.adapted_right) {
        std::fprintf(stderr, "  window %d missed %s: %s\n", w.window, x.question.c_str(), x.adapted_reply.c_str());
      }
      if (x.kind == "general" && x.base_right && !x.adapted_right) {
        std::fprintf(stderr, "  window %d lost %s: %s\n", w.window, x.question.c_str(), x.adapted_reply.c_str());
      }
    }
    std::fprintf(stderr,
                 "window %d: recall %.0f%%, first window's facts %d/%d, "
                 "retention %.0f%% (%d/%d), KL %.3f, %lld replayed, %.1f s training\n",
                 w.window, r.trained_recall, w.first_window_right, w.first_window_asked, r.retention, r.retained,
                 r.known, r.forgetting_kl, static_cast<long long>(w.run.report.replay_examples),
                 w.run.report.wall_seconds);
  });
  ASSERT_TRUE(windows.ok()) << windows.status().ToString();
  ASSERT_EQ(windows->size(), size_t(kWindows));
  for (const auto& w : *windows) {
    SCOPED_TRACE("window " + std::to_string(w.window));
    ASSERT_TRUE(w.run.trained) << w.run.skipped_reason;
    EXPECT_TRUE(w.run.promoted) << w.run.gate_summary;
    EXPECT_EQ(w.facts_so_far, w.window * kFactsPerWindow);
    EXPECT_EQ(w.first_window_asked, 2 * kFactsPerWindow);
    // Windows after the first replay older events (the replay store's
    // reservoir), which is what keeps the earlier facts.
    if (w.window > 1) {
      EXPECT_GT(w.run.report.replay_examples, 0);
    }
  }
  const eval::WindowResult& last = windows->back();
  // The corrected fact is asked in its two taught phrasings.
  EXPECT_EQ(last.updated_asked, 2);

  // Measured on an AMD EPYC (Zen 4), the results are the same run after run:
  //   window  recall of all taught  first window's  retention   KL
  //   1       100 %  (8/8)          8/8            100 % 16/16  0.005
  //   2       100 % (16/16)         8/8             75 % 12/16  0.032
  //   3       100 % (24/24)         8/8             81 % 13/16  0.095
  // The bounds leave one or two answers of slack for other CPUs (a reply is
  // right only if every byte is the argmax). Retention falls short of the
  // 95 % that SmolLM2 is held to: this model's own facts are learned with
  // thin margins, a few of them ("thetgmpd?", "color?") flip at the first
  // change, and the windows' drift adds up (the KL above).
  const double min_recall[kWindows] = {87.5, 87.5, 87.5};
  const double min_retention[kWindows] = {93.75, 68.75, 68.75};
  for (int k = 0; k < kWindows; ++k) {
    const eval::EvalReport& r = (*windows)[size_t(k)].report;
    SCOPED_TRACE("window " + std::to_string(k + 1));
    EXPECT_GE(r.trained_recall, min_recall[k]);
    EXPECT_GE(r.retention, min_retention[k]);
  }
  // The first window's facts survive two more windows of other facts (the
  // corrected one counts with its new answer): 90 % of 8 answers, less one
  // answer of slack.
  EXPECT_GE(last.first_window_right, 2 * kFactsPerWindow - 1);
  // The correction wins over what was learned first.
  EXPECT_EQ(last.updated_right, last.updated_asked);
  EXPECT_EQ(last.old_answer_given, 0);
}

}  // namespace
}  // namespace attune
