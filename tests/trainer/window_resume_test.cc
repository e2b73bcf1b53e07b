// Training windows over a real replay store and registry: an interrupted
// window resumes on its own events even when feedback arrived meanwhile, and
// a checkpoint that can no longer be resumed is discarded with a reason
// instead of failing every later window.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "attune/core/file.h"
#include "tests/trainer/window_loop.h"

namespace attune::trainer {
namespace {

using testing::Loop;

bool HasNote(const TrainingRunResult& r, const std::string& part) {
  for (const auto& n : r.report.notes) {
    if (n.find(part) != std::string::npos) return true;
  }
  return false;
}

// The bug: every window samples afresh, so feedback recorded while the
// window was closed changed the sample and the checkpoint was refused with
// FailedPrecondition by every later window, forever.
TEST(WindowResumeTest, InterruptedWindowResumesAfterNewFeedbackArrived) {
  Loop l("new_feedback");
  l.Add(0, 6);
  auto first = l.Window(/*stop_after_micro_steps=*/3);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_FALSE(first->completed);
  ASSERT_TRUE(PathExists(l.ck));
  l.Add(6, 9);  // the user was active while the window was closed

  auto second = l.Window();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->completed);
  EXPECT_TRUE(HasNote(*second, "resumed from step 3"));
  EXPECT_FALSE(PathExists(l.ck));
  EXPECT_EQ(second->report.new_examples, 6) << "the resumed window trains on its own six events";
  auto stats = l.store->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->new_since_cursor, 3u) << "the three events that arrived meanwhile wait for the next window";
  auto third = l.Window();
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_TRUE(third->completed);
}

TEST(WindowResumeTest, CheckpointIsDiscardedWhenOneOfItsEventsWasErased) {
  Loop l("erased");
  l.Add(0, 6);
  ASSERT_TRUE(l.Window(3).ok());
  ASSERT_TRUE(PathExists(l.ck));
  ASSERT_TRUE(l.store->ForgetEvent("e2").ok());

  auto next = l.Window();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_TRUE(next->completed);
  EXPECT_TRUE(HasNote(*next, "event 'e2'"));
  EXPECT_TRUE(HasNote(*next, "discarded the checkpoint"));
  EXPECT_FALSE(HasNote(*next, "resumed from step"));
  EXPECT_EQ(next->report.new_examples, 5) << "a fresh sample without the erased event";
}

TEST(WindowResumeTest, CheckpointIsDiscardedWhenItsParentWasRolledBack) {
  Loop l("rolled_back");
  l.Add(0, 6);
  auto v1 = l.Window();
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  ASSERT_TRUE(v1->promoted);
  l.Add(6, 12);
  ASSERT_TRUE(l.Window(3).ok());  // continues from v1, interrupted
  auto w = ReadCheckpointWindow(l.ck);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->parent_version, v1->version);
  EXPECT_EQ(w->new_event_ids.size(), 6u);
  adapters::RollbackRequest rb;
  ASSERT_TRUE(l.registry->Rollback(rb).ok());  // back to the bare base model

  auto next = l.Window();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_TRUE(next->completed);
  EXPECT_TRUE(HasNote(*next, "rolled back or replaced"));
  EXPECT_FALSE(HasNote(*next, "resumed from step"));
  auto info = l.registry->Get(next->version);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->parent_version, "") << "the fresh window starts from the active state (no adapter)";
}

TEST(WindowResumeTest, CheckpointOfOtherOptionsIsDiscardedNotFatal) {
  Loop l("options");
  l.Add(0, 6);
  ASSERT_TRUE(l.Window(3).ok());
  ASSERT_TRUE(PathExists(l.ck));
  TrainingRunOptions o = Loop::Options();
  o.trainer.lora.rank = 8;
  auto next = RunTrainingWindow(l.model, *l.store, *l.registry, l.ck, o, nullptr, nullptr);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_TRUE(next->completed);
  EXPECT_TRUE(HasNote(*next, "discarded the checkpoint"));
}

}  // namespace
}  // namespace attune::trainer
