// Several threads on one Registry, and two Registry objects on one
// directory, mutating and reading at once. Also built with ThreadSanitizer
// (tests/adapters/tsan/).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "attune/adapters/health.h"
#include "attune/adapters/registry.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::ScratchDir;

// Errors a racing caller must expect and handle; anything else is a bug.
bool Expected(const Status& s) {
  return s.ok() || s.code() == StatusCode::kFailedPrecondition || s.code() == StatusCode::kAborted ||
         s.code() == StatusCode::kNotFound;
}

TEST(RegistryThreads, ConcurrentMutationsAndReadsStayConsistent) {
  ScratchDir dir;
  auto opened = Registry::Open(RegistryOptions{}, dir.path() + "/adapters");
  ASSERT_TRUE(opened.ok());
  Registry& reg = **opened;
  constexpr int kRounds = 12;
  std::atomic<int> unexpected{0};
  std::atomic<bool> done{false};
  auto check = [&](const Status& s) {
    if (!Expected(s)) unexpected.fetch_add(1);
  };
  HealthMonitor monitor;
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // trainer: add and force-promote
    for (int i = 0; i < kRounds; ++i) {
      auto id = reg.Add(MakeAdapter(static_cast<uint32_t>(i + 1)));
      check(id.status());
      if (id.ok()) check(reg.Promote(*id, std::nullopt, true).status());
      monitor.SetActive(reg.Active(), "");
    }
  });
  threads.emplace_back([&] {  // health watch: NaN reports roll back
    for (int i = 0; i < kRounds; ++i) {
      HealthVerdict v = monitor.RecordNonFinite(reg.Active());
      (void)monitor.RecordRating(reg.Active(), i % 2 == 0);
      check(ApplyVerdict(reg, v).status());
    }
  });
  threads.emplace_back([&] {  // user: pins, gc
    for (int i = 0; i < kRounds; ++i) {
      check(reg.Pin("v1"));
      check(reg.Gc().status());
      check(reg.Unpin("v1"));
    }
  });
  threads.emplace_back([&] {  // runtime: reads what is active
    while (!done.load()) {
      std::string active = reg.Active();
      if (!active.empty()) check(reg.Load(active).status());
      (void)reg.List();
      (void)reg.History();
    }
  });
  for (size_t i = 0; i + 1 < threads.size(); ++i) threads[i].join();
  done = true;
  threads.back().join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_TRUE(reg.Check(true).ok());
}

TEST(RegistryThreads, TwoRegistriesOnOneDirectoryLoseNothing) {
  ScratchDir dir;
  constexpr int kPerThread = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      RegistryOptions o;
      o.lock_timeout_ms = 10000;
      auto reg = Registry::Open(o, dir.path() + "/adapters");
      if (!reg.ok()) {
        failures.fetch_add(1);
        return;
      }
      for (int i = 0; i < kPerThread; ++i) {
        if (!(*reg)->Add(MakeAdapter(static_cast<uint32_t>(100 * (t + 1) + i))).ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  auto reg = Registry::Open(RegistryOptions{}, dir.path() + "/adapters");
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ((*reg)->List().size(), 2u * kPerThread);
}

}  // namespace
}  // namespace attune::adapters
