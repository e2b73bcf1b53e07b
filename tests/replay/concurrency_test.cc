#include <gtest/gtest.h>

#include <thread>

#include "attune/replay/store.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

using testing::MakeEvent;
using testing::ScratchDir;
using testing::TestOptions;

TEST(ConcurrencyTest, ManyThreadsAppendingInSyncModeLoseNothing) {
  ScratchDir dir("concurrency");
  Options o = TestOptions();
  o.durability = Durability::kSync;
  auto store = std::move(Store::Open(o, dir.path())).value();
  constexpr int kThreads = 8, kPerThread = 100;
  std::vector<std::thread> threads;
  std::atomic<int> stored{0}, duplicates{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every id is appended by two threads: exactly one stores it.
        int id = (t / 2) * kPerThread + i;
        auto r = store->Append(MakeEvent("e" + std::to_string(id)));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        ++(r->outcome == AppendOutcome::kStored ? stored : duplicates);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(stored.load(), kThreads * kPerThread / 2);
  EXPECT_EQ(duplicates.load(), kThreads * kPerThread / 2);
  EXPECT_EQ(store->GetStats()->events, uint64_t{kThreads * kPerThread / 2});
  EXPECT_TRUE(store->Verify().ok()) << store->Verify().ToString();
}

TEST(ConcurrencyTest, AppendsSamplesAndForgetsInterleaveConsistently) {
  ScratchDir dir("concurrency");
  Options o = TestOptions();
  o.retention.max_events = 300;
  o.retention.recent_window = 50;
  auto store = std::move(Store::Open(o, dir.path())).value();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 1500; ++i) {
      auto r = store->Append(MakeEvent("e" + std::to_string(i), "u" + std::to_string(i % 7)));
      ASSERT_TRUE(r.ok());
    }
    stop = true;
  });
  std::thread trainer([&] {
    for (int v = 0; !stop; ++v) {
      auto b = store->Sample({.max_new = 20, .seed = uint64_t(v)});
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      auto r = store->RecordTraining({"v" + std::to_string(v), b->cursor_before, b->cursor_after, {}});
      ASSERT_TRUE(r.ok() || r.status().code() == StatusCode::kAborted);
    }
  });
  std::thread eraser([&] {
    for (int i = 0; i < 5 && !stop; ++i) ASSERT_TRUE(store->ForgetUser("u3").ok());
  });
  writer.join();
  trainer.join();
  eraser.join();
  EXPECT_TRUE(store->Verify().ok()) << store->Verify().ToString();
}

}  // namespace
}  // namespace attune::replay
