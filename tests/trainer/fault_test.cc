// Training windows under injected filesystem faults: a full disk or an I/O
// error at any write of a window (checkpoint, registry payload, registry
// STATE) ends it with a clear error, loses no acknowledged feedback and
// wedges nothing; a power cut at any point leaves a checkpoint that loads or
// none, and a registry that opens consistent.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "attune/core/env.h"
#include "tests/core/fault_env.h"
#include "tests/trainer/window_loop.h"

namespace attune::trainer {
namespace {

using attune::testing::FaultInjectionEnv;
using testing::Loop;

TrainingRunOptions Faulty() {
  TrainingRunOptions o = Loop::Options();
  o.trainer.max_steps = 2;
  o.trainer.checkpoint_every_steps = 1;  // one checkpoint write inside the window
  return o;
}

// Nothing acknowledged is lost, the registry is consistent, and the next
// window (faults gone) completes: nothing is wedged.
void ExpectRecovers(Loop& l, uint64_t events, const std::string& where) {
  auto stats = l.store->GetStats();
  ASSERT_TRUE(stats.ok()) << where;
  EXPECT_EQ(stats->events, events) << where << ": acknowledged feedback was lost";
  EXPECT_TRUE(l.registry->Check(/*verify_payloads=*/true).ok()) << where;
  auto ck = ReadCheckpointWindow(l.ck);
  EXPECT_TRUE(ck.ok() || ck.status().code() == StatusCode::kNotFound) << where << ": " << ck.status().ToString();
  if (stats->new_since_cursor == 0) return;  // the faulted window finished its bookkeeping
  auto next = l.Window(-1, Faulty());
  ASSERT_TRUE(next.ok()) << where << ": the next window failed: " << next.status().ToString();
  EXPECT_TRUE(next->completed) << where;
  EXPECT_FALSE(next->version.empty()) << where;
}

TEST(TrainerFaultTest, FullDiskAtAnyWriteOfAWindowEndsItWithAClearError) {
  Loop l("full_disk");
  l.Add(0, 6);
  for (int k = 0;; ++k) {
    const std::string where = "write fault after " + std::to_string(k) + " operations";
    FaultInjectionEnv env;
    Result<TrainingRunResult> r = InternalError("not run");
    const int err = k % 2 ? EIO : ENOSPC;
    {
      ScopedDefaultEnv scope(&env);
      env.FailAfter(k, err);
      r = l.Window(-1, Faulty());
    }
    if (!env.injected()) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_GT(k, 10) << "a window writes a checkpoint, a payload and STATE twice";
      std::printf("%d write operations in a window, each failed once\n", k);
      return;
    }
    ASSERT_FALSE(r.ok()) << where << ": a window whose write failed reported success";
    EXPECT_EQ(r.status().code(), StatusCode::kIoError) << where << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(std::strerror(err)), std::string::npos) << r.status().message();
    ExpectRecovers(l, uint64_t(6 * (k + 1)), where);
    if (::testing::Test::HasFatalFailure()) return;
    l.Add(6 * (k + 1), 6 * (k + 2));  // the next round's new feedback
  }
}

TEST(TrainerFaultTest, PowerCutAtAnyPointOfAWindowLeavesLoadableState) {
  Loop l("power_cut");
  l.Add(0, 6);
  for (int k = 0;; ++k) {
    const std::string where = "power cut after " + std::to_string(k) + " write operations";
    FaultInjectionEnv env;
    {
      ScopedDefaultEnv scope(&env);
      env.FailAfter(k, EIO);  // the process dies here: nothing later reaches the disk
      l.Window(-1, Faulty()).status().IgnoreError();
      env.DropUnsyncedData();
    }
    l.Reopen();  // the restarted process
    ExpectRecovers(l, uint64_t(6 * (k + 1)), where);
    if (::testing::Test::HasFatalFailure() || !env.injected()) return;
    l.Add(6 * (k + 1), 6 * (k + 2));
  }
}

}  // namespace
}  // namespace attune::trainer
