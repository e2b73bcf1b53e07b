// TrainerOptions::scope: a window's candidate carries a probe fitted on the
// window's user messages against the general prompts, which puts the first
// in its scope and the second out of it.
#include <gtest/gtest.h>

#include "attune/runtime/generate.h"
#include "attune/runtime/scope.h"
#include "tests/trainer/window_loop.h"
#include "trainer/src/anchors.h"

namespace attune::trainer {
namespace {

using testing::Loop;

// One window with TrainerOptions::scope over what `l` holds; its result and
// the candidate it added.
void TrainScoped(Loop& l, TrainingRunResult* run, adapters::Adapter* adapter) {
  TrainingRunOptions o = Loop::Options();
  o.trainer.scope = true;
  auto r = l.Window(-1, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->completed);
  ASSERT_FALSE(r->version.empty());
  auto a = l.registry->Load(r->version);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  *run = *r;
  *adapter = *a;
}

bool HasNote(const TrainingRunResult& run, const std::string& text) {
  for (const auto& n : run.report.notes) {
    if (n.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(ScopeWindowTest, TheCandidateCarriesAScopeFittedOnTheWindowsMessages) {
  Loop l("scope");
  l.Add(0, 6);
  TrainingRunResult run;
  adapters::Adapter adapter;
  ASSERT_NO_FATAL_FAILURE(TrainScoped(l, &run, &adapter));
  ASSERT_FALSE(adapter.scope.empty());
  EXPECT_EQ(adapter.training_config.at("scope"), "probe");
  EXPECT_EQ(adapter.scope.fitted_in, 6);  // "my fact 0?" ... "my fact 5?"
  // The pool, and the six asked about no one ("a fact 0?").
  EXPECT_EQ(adapter.scope.fitted_out, int64_t(internal::AnchorPool().size()) + 6);
  EXPECT_TRUE(HasNote(run, "scope fitted on 6 message(s) in"));
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(runtime::InScope(*l.model, adapter.scope, "my fact " + std::to_string(i) + "?")) << i;
  }
  int pool_in = 0;
  for (const auto& p : internal::AnchorPool()) pool_in += runtime::InScope(*l.model, adapter.scope, p);
  EXPECT_LE(pool_in, adapter.scope.misplaced);
  EXPECT_LE(adapter.scope.misplaced, 2);

  // Without the option the next candidate answers everything.
  l.Add(6, 9);
  auto plain = l.Window();
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  ASSERT_FALSE(plain->version.empty());
  auto b = l.registry->Load(plain->version);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->scope.empty());
}

// The bug: a window whose examples hold no user message (a context of a
// system turn alone) trained to the end, then failed fitting a scope with
// nothing in it, and so did every later window replaying the same events.
TEST(ScopeWindowTest, AWindowWithoutAUserMessageTrainsWithoutAScope) {
  Loop l("scope_no_user");
  feedback::Event e;
  e.id = "sys";
  e.user_id = "u";
  e.context = {{feedback::Role::kSystem, "Answer in one word."}};
  e.signal = feedback::Demonstration{"Fine."};
  ASSERT_TRUE(l.store->Append(e).ok());
  TrainingRunResult run;
  adapters::Adapter adapter;
  ASSERT_NO_FATAL_FAILURE(TrainScoped(l, &run, &adapter));
  EXPECT_TRUE(adapter.scope.empty());
  EXPECT_TRUE(HasNote(run, "no scope"));
}

// Feedback on `message` that teaches what the base model says to it: a
// thumbs-up on the base's reply (no adapter version), or, with `version`,
// on the same reply served by that adapter, or, when `demonstrate`, the
// base's reply written by the user.
void TeachTheBasesReply(Loop& l, const std::string& id, const std::string& message, const std::string& version = "",
                        bool demonstrate = false) {
  auto reply = runtime::GreedyReply(*l.model, nullptr, message, 12);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  feedback::Event e;
  e.id = id;
  e.user_id = "u";
  e.context = {{feedback::Role::kUser, message}};
  if (demonstrate) {
    e.signal = feedback::Demonstration{*reply};
  } else {
    e.response = *reply;
    e.adapter_version = version;
    e.signal = feedback::Rating{feedback::Thumb::kUp};
  }
  ASSERT_TRUE(l.store->Append(e).ok());
}

// The bug: a thumbs-up on an answer the base model already gives put its
// message in the scope, and with it the general questions of the same
// shape, which the adapter then answered instead of the base. Such a
// message is left to the base (out of the scope); a window of nothing else
// keeps its messages in.
TEST(ScopeWindowTest, AMessageTheBaseAlreadyAnswersAsTaughtIsLeftToTheBase) {
  const std::vector<std::string> general = {"What is the capital of France?", "How many legs does a cat have?",
                                            "Who wrote Hamlet?"};
  {
    Loop l("scope_base_says");
    l.Add(0, 6);
    // Told by the event (a base reply approved), by the base's own greedy
    // answer (the reply an adapter served, the same text demonstrated).
    ASSERT_NO_FATAL_FAILURE(TeachTheBasesReply(l, "up", general[0]));
    ASSERT_NO_FATAL_FAILURE(TeachTheBasesReply(l, "up-adapter", general[1], "v1"));
    ASSERT_NO_FATAL_FAILURE(TeachTheBasesReply(l, "demo", general[2], "", /*demonstrate=*/true));
    // An adapter's reply approved, which the base does not give: in.
    feedback::Event up;
    up.id = "up-fact";
    up.user_id = "u";
    up.context = {{feedback::Role::kUser, "my fact 6?"}};
    up.response = "fact 6";
    up.adapter_version = "v1";
    up.signal = feedback::Rating{feedback::Thumb::kUp};
    ASSERT_TRUE(l.store->Append(up).ok());
    TrainingRunResult run;
    adapters::Adapter adapter;
    ASSERT_NO_FATAL_FAILURE(TrainScoped(l, &run, &adapter));
    EXPECT_EQ(adapter.scope.fitted_in, 7);
    EXPECT_EQ(adapter.scope.fitted_out, int64_t(internal::AnchorPool().size()) + 3 + 7);
    EXPECT_TRUE(HasNote(run, "(3 the base model already answers as taught among them)"));
    for (const auto& g : general) EXPECT_FALSE(runtime::InScope(*l.model, adapter.scope, g)) << g;
    for (int i = 0; i < 7; ++i) {
      EXPECT_TRUE(runtime::InScope(*l.model, adapter.scope, "my fact " + std::to_string(i) + "?")) << i;
    }
  }
  Loop l("scope_base_says_all");
  ASSERT_NO_FATAL_FAILURE(TeachTheBasesReply(l, "up", general[0]));
  TrainingRunResult run;
  adapters::Adapter adapter;
  ASSERT_NO_FATAL_FAILURE(TrainScoped(l, &run, &adapter));
  EXPECT_EQ(adapter.scope.fitted_in, 1);
  EXPECT_TRUE(HasNote(run, "the base model already gives every answer of the window"));
  EXPECT_TRUE(runtime::InScope(*l.model, adapter.scope, general[0]));
}

}  // namespace
}  // namespace attune::trainer
