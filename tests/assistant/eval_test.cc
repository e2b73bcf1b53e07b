// attune/eval.h: the questions format and its errors, the shipped personas,
// and an evaluation of a trained adapter against the base on the tiny model.
#include "attune/eval.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <set>

#include "tests/assistant/tiny_assistant.h"

namespace attune::eval {
namespace {

using attune::testing::Fixture;

std::string ParseError(const std::string& json) {
  auto r = ParseQuestions(json, "q.json");
  return r.ok() ? "(parsed)" : r.status().message();
}

TEST(EvalQuestionsTest, ErrorsNameTheFileAndTheField) {
  EXPECT_NE(ParseError("{").find("q.json: not valid JSON"), std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [], "colour": 1})").find("q.json: colour: unknown key"), std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [{"taught": ["a?"], "answer": "x", "expect": "x"}]})").find("facts[0].heldout: missing"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [{"heldout": ["a?", 3], "expect": "x"}]})").find("facts[0].heldout[1]: must be a non-empty string"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [{"taught": ["a?"], "heldout": ["b?"], "expect": "x"}]})").find("facts[0].answer: missing"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"general": [{"question": "q?", "expect": "(unclosed"}]})")
                .find("general[0].expect: is not a valid regular expression"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [{"taught": ["a?"], "heldout": ["b?"], "answer": "It is teal.", "expect": "blue"}]})")
                .find("facts[0].expect: does not match the fact's own answer"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"name": "empty"})").find("asks nothing"), std::string::npos);
}

TEST(EvalQuestionsTest, AnUpdateIsTaughtLaterAndThenExpected) {
  EXPECT_NE(ParseError(R"({"facts": [{"taught": ["a?"], "heldout": ["b?"], "answer": "Oslo.", "expect": "Oslo",
                           "update": {"answer": "Oslo again.", "expect": "Oslo"}}]})")
                .find("facts[0].update.expect: must match the update's answer and not the first answer"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"facts": [{"heldout": ["b?"], "expect": "Oslo", "update": {"answer": "Rome.", "expect": "Rome"}}]})")
                .find("facts[0].update: needs taught phrasings"),
            std::string::npos);
  auto set = ParseQuestions(R"({"name": "m", "user": "u", "facts": [
      {"taught": ["pet?"], "heldout": ["my pet?"], "answer": "A cat.", "expect": "cat"},
      {"taught": ["town?", "city?"], "heldout": ["where?"], "answer": "Oslo.", "expect": "Oslo",
       "update": {"answer": "Rome now.", "expect": "Rome"}}]})",
                            "m.json");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto updates = UpdateEvents(*set);
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].id, "m-1-0-update");
  EXPECT_EQ(updates[1].id, "m-1-1-update");
  EXPECT_EQ(std::get<feedback::Demonstration>(updates[1].signal).text, "Rome now.");
  EXPECT_EQ(updates[1].user_id, "u");
  QuestionSet after = Updated(*set);
  EXPECT_EQ(after.facts[0].expect, "cat");
  EXPECT_EQ(after.facts[1].expect, "Rome");
  EXPECT_TRUE(after.facts[1].update_answer.empty());
}

TEST(EvalQuestionsTest, LiteralMatchesExactlyItsTextWhateverTheMetacharacters) {
  for (std::string text : {"1+1?", "a.b", "(x)[y]{z}", "^$|*\\", "plain"}) {
    EXPECT_TRUE(Matches("say " + text + " now", Literal(text))) << text;
  }
  EXPECT_FALSE(Matches("aXb", Literal("a.b")));
  EXPECT_FALSE(Matches("11", Literal("1+1")));
  EXPECT_EQ(Literal("a?"), "a\\?");
}

TEST(EvalQuestionsTest, MatchesIgnoringCaseAnywhereInTheReply) {
  EXPECT_TRUE(Matches("Your dog's name is PIXEL.", "pixel"));
  EXPECT_TRUE(Matches("A week has 7 days.", R"(\b(seven|7)\b)"));
  EXPECT_FALSE(Matches("It has 17 legs.", R"(\b(seven|7)\b)"));
  EXPECT_FALSE(Matches("anything", "(unclosed"));
}

TEST(EvalQuestionsTest, TheShippedPersonasParseAndDiffer) {
  std::set<std::string> users, first_answers;
  const std::pair<const char*, size_t> personas[] = {{"sam", 10}, {"ines", 14}, {"kofi", 18}};
  for (const auto& [name, n_facts] : personas) {
    auto set = LoadQuestions(Fixture(std::string("../../examples/personas/") + name + ".json"));
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    EXPECT_EQ(set->name, name);
    EXPECT_EQ(set->facts.size(), n_facts) << name;
    EXPECT_GE(set->general.size(), 20u) << name;
    users.insert(set->user);
    first_answers.insert(set->facts[0].answer);
    // Every phrasing teaches: one demonstration each, ids unique.
    auto events = TeachingEvents(*set);
    std::set<std::string> ids;
    size_t taught = 0;
    for (const auto& f : set->facts) taught += f.taught.size();
    for (const auto& e : events) ids.insert(e.id);
    EXPECT_EQ(events.size(), taught);
    EXPECT_EQ(ids.size(), taught);
  }
  EXPECT_EQ(users.size(), 3u);
  EXPECT_EQ(first_answers.size(), 3u);
}

struct TempDir : attune::testing::TempDir {
  TempDir() : attune::testing::TempDir("attune_eval_") {}
};

// lr 5e-3, not the tiny options' 1e-2: at 1e-2 the taught answer ("cat")
// came and went with the number of steps (taught at 25, 40, 50 and 60, lost
// at 30, 80 and 100), so a change in the rounding of the training step
// tipped greedy decoding from "cat" to the end marker's bytes. At 3e-3 and
// 5e-3 every count from 40 to 150 teaches it, with either attention path
// of the bf16 training products.
AssistantOptions TinyOptions(const std::string& dir) {
  AssistantOptions o = attune::testing::TinyAssistantOptions(dir);
  o.background_training = false;
  o.training.trainer.max_steps = 40;
  o.training.trainer.adamw.lr = 5e-3;
  return o;
}

// The tiny random model learns one phrasing, not paraphrases: the same
// question taught five times, and asked again as the "held-out" one; and
// general questions, whose expected replies ExpectTheBasesReplies sets.
QuestionSet PetSet(const std::vector<std::string>& general) {
  QuestionSet set;
  set.name = "tiny";
  set.user = "u";
  set.facts.push_back({std::vector<std::string>(5, "my pet?"), {"my pet?"}, "cat", "cat", "", ""});
  for (const auto& q : general) set.general.push_back({q, "."});
  return set;
}

// The general questions expect what the base model replies (escaped).
void ExpectTheBasesReplies(const Replies& base, QuestionSet* set) {
  for (size_t i = 0; i < set->general.size(); ++i) {
    ASSERT_FALSE(base.general[i].empty());
    set->general[i].expect = Literal(base.general[i]);
  }
}

TEST(EvalTest, JudgesATrainedAdapterAgainstTheBase) {
  TempDir dir;
  auto opened = Assistant::Open(TinyOptions(dir.path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  QuestionSet set = PetSet({"hi", "ab"});
  EvalOptions o;
  o.max_tokens = 8;
  auto base = AnswerAll(a, set, "base", o);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  ASSERT_FALSE(Matches(base->heldout[0], "cat")) << "the base already says cat: " << base->heldout[0];
  ASSERT_NO_FATAL_FAILURE(ExpectTheBasesReplies(*base, &set));

  // The base judged as the adapter: nothing learned, nothing forgotten.
  auto same = Evaluate(a, set, o);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_EQ(same->adapter_label, "base");
  EXPECT_EQ(same->recall, same->recall_before);
  EXPECT_EQ(same->known, 2);
  EXPECT_EQ(same->retention, 100);
  EXPECT_EQ(same->untrained_known, 2) << "no question was upvoted";
  EXPECT_EQ(same->untrained_retention, 100);
  EXPECT_EQ(same->forgetting_kl, 0);
  EXPECT_EQ(same->general_in_scope, 0) << "the base is no adapter";
  EXPECT_EQ(same->trained, 5);
  EXPECT_EQ(same->results.size(), 5u + 1u + 2u);

  for (auto& e : TeachingEvents(set)) ASSERT_TRUE(a.Record(e).ok());
  auto run = a.TrainNow();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  ASSERT_TRUE(run->promoted) << run->gate_summary;

  int calls = 0;
  o.on_progress = [&](int done, int total) {
    ++calls;
    EXPECT_LE(done, total);
  };
  o.base_replies = &*base;
  // A thumbs-up on the first general answer the base gets right ("hi"),
  // given to the adapter's reply: one event more in the store.
  const uint64_t stored = a.GetStatus().stored_events;
  auto upvoted = UpvoteKnownGeneral(a, set, *base, 1);
  ASSERT_TRUE(upvoted.ok()) << upvoted.status().ToString();
  EXPECT_EQ(*upvoted, std::vector<std::string>{"hi"});
  EXPECT_EQ(a.GetStatus().stored_events, stored + 1);
  o.trained_general = *upvoted;
  auto judged = Evaluate(a, set, o);  // "" = the active version
  ASSERT_TRUE(judged.ok()) << judged.status().ToString();
  EXPECT_EQ(judged->adapter_version, run->version);
  EXPECT_EQ(judged->adapter_label, run->label);
  EXPECT_EQ(calls, 8) << "only the adapter answers when the base replies are given";
  EXPECT_EQ(judged->untrained_known, 1) << "retention without the upvoted question counts \"ab\" alone";
  EXPECT_EQ(judged->untrained_retained, int(judged->results.back().adapted_right));
  EXPECT_EQ(judged->untrained_retention, 100.0 * judged->untrained_retained);
  EXPECT_EQ(judged->recall_before, 0);
  EXPECT_EQ(judged->recall, 100) << judged->results[5].adapted_reply;
  EXPECT_EQ(judged->trained_recall, 100);
  EXPECT_GT(judged->forgetting_kl, 0);
  EXPECT_EQ(judged->general_in_scope, 2) << "an adapter without a scope answers every question";
  EXPECT_EQ(judged->known, 2);
  EXPECT_EQ(judged->retention, 100.0 * judged->retained / 2);
  const std::string html = HtmlPage("t", ReportHtmlSections(*judged));
  EXPECT_NE(html.find("Held-out paraphrases"), std::string::npos);
  EXPECT_NE(html.find("retention without the upvoted answers"), std::string::npos);
  EXPECT_EQ(HtmlPage("t", ReportHtmlSections(*same)).find("without the upvoted"), std::string::npos)
      << "the line shows only when questions were upvoted";
  EXPECT_NE(html.find(run->label), std::string::npos);
  EXPECT_EQ(html.find("the base model the others"), std::string::npos) << "no scope, no scope line";

  o.adapter = "v99";
  auto unknown = Evaluate(a, set, o);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  QuestionSet other = set;
  other.general.pop_back();
  o.adapter = "";
  auto mismatch = Evaluate(a, other, o);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("do not belong"), std::string::npos);
  auto mismatched_upvote = UpvoteKnownGeneral(a, other, *base);
  ASSERT_FALSE(mismatched_upvote.ok());
  EXPECT_NE(mismatched_upvote.status().message().find("do not belong"), std::string::npos);
}

struct CliRun {
  int code = -1;
  std::string out, err;
};

CliRun RunCli(const std::string& dir, const std::string& args) {
  const std::string out = dir + "/cli.out", err = dir + "/cli.err";
  const int status = std::system((std::string(ATTUNE_CLI) + " eval " + args + " >" + out + " 2>" + err).c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// A scoped adapter answers only what its scope takes in: the evaluation
// counts what the engine served (the base's reply, no KL, for the others).
TEST(EvalTest, GeneralQuestionsOutOfAScopeGetTheBasesReplyAndNoKl) {
  TempDir dir;
  AssistantOptions options = TinyOptions(dir.path);
  options.training.trainer.scope = true;
  auto opened = Assistant::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  QuestionSet set = PetSet({"What is the capital of France?", "How many legs does a spider have?"});
  EvalOptions o;
  o.max_tokens = 8;
  auto base = AnswerAll(a, set, "base", o);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  ASSERT_NO_FATAL_FAILURE(ExpectTheBasesReplies(*base, &set));
  for (auto& e : TeachingEvents(set)) ASSERT_TRUE(a.Record(e).ok());
  auto run = a.TrainNow();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  ASSERT_TRUE(run->promoted) << run->gate_summary;
  o.base_replies = &*base;
  auto judged = Evaluate(a, set, o);
  ASSERT_TRUE(judged.ok()) << judged.status().ToString();
  EXPECT_EQ(judged->recall, 100) << "the taught question is in the scope it was fitted on";
  EXPECT_EQ(judged->general_in_scope, 0) << "general questions are out of the scope";
  EXPECT_EQ(judged->retained, 2) << "the base answers them, as before";
  EXPECT_EQ(judged->forgetting_kl, 0) << "what the base answers differs from it by nothing";
  const std::string html = HtmlPage("t", ReportHtmlSections(*judged));
  EXPECT_NE(html.find("the base model the others"), std::string::npos);
}

TEST(EvalTest, RunWindowsRefusesAWindowCountItCannotSplitAndAnUnknownKind) {
  TempDir dir;
  auto opened = Assistant::Open(TinyOptions(dir.path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  QuestionSet set;
  set.name = "tiny";
  set.facts.push_back({{"a?"}, {"a?"}, "x", "x", "", ""});
  set.facts.push_back({{"b?"}, {"b?"}, "y", "y", "", ""});
  for (int windows : {0, 3}) {
    WindowsOptions o;
    o.windows = windows;
    auto r = RunWindows(**opened, set, o);
    ASSERT_FALSE(r.ok()) << windows;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("windows must be between 1 and the number of facts (2)"), std::string::npos)
        << r.status().ToString();
  }
  WindowsOptions o;
  o.windows = 2;
  o.kind = "paraphrased";
  auto r = RunWindows(**opened, set, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'paraphrased'"), std::string::npos) << r.status().ToString();
  // A refused run recorded nothing: there is nothing to train.
  auto run = (*opened)->TrainNow();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_FALSE(run->trained);
}

TEST(EvalCliTest, PrintsTheScoresWritesTheReportOrNamesTheBadField) {
  TempDir dir;
  std::filesystem::create_directories(dir.path);
  const std::string bad = dir.path + "/bad.json", good = dir.path + "/good.json", report = dir.path + "/r.html";
  std::ofstream(bad) << R"({"facts": [{"heldout": ["x?"]}]})";
  std::ofstream(good) << R"({"name": "tiny", "facts": [{"heldout": ["my pet?"], "expect": "cat"}],
                             "general": [{"question": "hi", "expect": "."}]})";
  const std::string common = " --model " + Fixture("models/tiny_llama.gguf") + " --chat-template chatml --data-dir " +
                             dir.path + "/data --max-tokens 8";
  auto r = RunCli(dir.path, "--questions " + bad + common);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(bad + ": facts[0].expect: missing"), std::string::npos) << r.err;
  EXPECT_EQ(RunCli(dir.path, common).code, 2) << "--questions is required";
  EXPECT_EQ(RunCli(dir.path, "--questions " + good + common + " --adapter v7").code, 1) << "unknown version";

  r = RunCli(dir.path, "--questions " + good + common + " --adapter base --json --report " + report);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["questions"], "tiny");
  EXPECT_EQ(j["adapter_label"], "base");
  EXPECT_EQ(j["forgetting_kl"], 0);
  EXPECT_EQ(j["general"]["total"], 1);
  EXPECT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["report"], report);
  std::ifstream html(report);
  std::stringstream page;
  page << html.rdbuf();
  EXPECT_NE(page.str().find("<h1>Attune eval</h1>"), std::string::npos);
  EXPECT_NE(page.str().find("my pet?"), std::string::npos);
}

}  // namespace
}  // namespace attune::eval
