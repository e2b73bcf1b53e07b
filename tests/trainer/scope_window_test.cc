// TrainerOptions::scope: a window's candidate carries a probe fitted on the
// window's user messages against the general prompts, which puts the first
// in its scope and the second out of it.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace attune::trainer
