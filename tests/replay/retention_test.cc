#include <gtest/gtest.h>

#include <set>

#include "attune/replay/store.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

using testing::MakeEvent;
using testing::ScratchDir;
using testing::TestOptions;

using testing::OpenOrDie;

// Appends events "<prefix><i>" for i in [from, to) in batches of `chunk`.
void AppendRange(Store& store, int from, int to, int chunk = 50, size_t text_bytes = 32,
                 const std::string& prefix = "e") {
  for (int i = from; i < to; i += chunk) {
    std::vector<feedback::Event> batch;
    for (int j = i; j < std::min(to, i + chunk); ++j) {
      batch.push_back(MakeEvent(prefix + std::to_string(j), "u", text_bytes));
    }
    for (auto& r : store.AppendMany(std::move(batch))) ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

std::set<uint64_t> StoredSeqs(const Store& store) {
  std::set<uint64_t> seqs;
  EXPECT_TRUE(store
                  .Scan({},
                        [&](const StoredEvent& e) {
                          seqs.insert(e.seq);
                          return true;
                        })
                  .ok());
  return seqs;
}

Options Bounded(uint64_t max_events, uint64_t window, uint64_t seed = 42) {
  Options o = TestOptions();
  o.retention.max_events = max_events;
  o.retention.recent_window = window;
  o.retention.reservoir_seed = seed;
  return o;
}

TEST(RetentionTest, UnderBudgetNothingIsEvicted) {
  ScratchDir dir("retention");
  auto store = OpenOrDie(Bounded(100, 10), dir.path());
  AppendRange(*store, 0, 100);
  auto st = store->GetStats();
  EXPECT_EQ(st->events, 100u);
  EXPECT_EQ(st->evicted_count, 0u);
  EXPECT_EQ(st->recent, 10u);
  EXPECT_EQ(st->reservoir, 90u);
  EXPECT_TRUE(store->Verify().ok());
}

TEST(RetentionTest, CountBoundKeepsTheRecentWindowAndAFullReservoir) {
  ScratchDir dir("retention");
  auto store = OpenOrDie(Bounded(100, 20), dir.path());
  AppendRange(*store, 0, 500, 37);
  auto st = store->GetStats();
  EXPECT_EQ(st->events, 100u);
  EXPECT_EQ(st->recent, 20u);
  EXPECT_EQ(st->reservoir, 80u);
  EXPECT_EQ(st->evicted_count, 400u);
  auto seqs = StoredSeqs(*store);
  for (uint64_t s = 481; s <= 500; ++s) EXPECT_TRUE(seqs.count(s)) << s;
  ASSERT_TRUE(store->Verify().ok()) << store->Verify().ToString();
}

// Algorithm R keeps each of the n events that left the window with
// probability k/n. Over many trials, members must spread evenly over the
// stream: a chi-square goodness-of-fit test over 10 position buckets.
TEST(RetentionTest, ReservoirIsAUniformSampleChiSquare) {
  constexpr int kTrials = 16, kWindow = 10, kCapacity = 50, kGraduated = 1000, kBuckets = 10;
  std::vector<int> counts(kBuckets, 0);
  for (int t = 0; t < kTrials; ++t) {
    ScratchDir dir("chi2");
    auto store = OpenOrDie(Bounded(kWindow + kCapacity, kWindow, 1000 + t), dir.path());
    AppendRange(*store, 0, kGraduated + kWindow, 101);
    for (uint64_t seq : StoredSeqs(*store)) {
      if (seq <= kGraduated) ++counts[(seq - 1) * kBuckets / kGraduated];
    }
  }
  double expected = double(kTrials) * kCapacity / kBuckets;
  double chi2 = 0;
  for (int c : counts) chi2 += (c - expected) * (c - expected) / expected;
  // 9 degrees of freedom: P(chi2 > 27.88) = 0.001.
  EXPECT_LT(chi2, 27.88) << "bucket counts far from uniform";
  RecordProperty("chi2", std::to_string(chi2));
  int total = 0;
  for (int c : counts) total += c;
  EXPECT_EQ(total, kTrials * kCapacity);
}

TEST(RetentionTest, ReservoirStateSurvivesRestartIdentically) {
  ScratchDir a("restart_a"), b("restart_b");
  {
    auto store = OpenOrDie(Bounded(60, 10, 7), a.path());
    AppendRange(*store, 0, 300, 23);
  }
  auto reopened = OpenOrDie(Bounded(60, 10, 999), a.path());  // seed only used at creation
  AppendRange(*reopened, 300, 600, 23);
  auto uninterrupted = OpenOrDie(Bounded(60, 10, 7), b.path());
  AppendRange(*uninterrupted, 0, 600, 23);
  EXPECT_EQ(StoredSeqs(*reopened), StoredSeqs(*uninterrupted));
  EXPECT_TRUE(reopened->Verify().ok());
}

TEST(RetentionTest, ByteBoundEvictsReservoirMembersFirst) {
  ScratchDir dir("retention");
  Options o = Bounded(100, 10);
  o.retention.max_bytes = 60 * 1024;
  auto store = OpenOrDie(o, dir.path());
  AppendRange(*store, 0, 200, 10, /*text_bytes=*/1000);
  auto st = store->GetStats();
  EXPECT_LE(st->bytes, 60u * 1024);
  EXPECT_GT(st->evicted_bytes, 0u);
  EXPECT_EQ(st->recent, 10u);  // the window survives while the reservoir can pay
  auto seqs = StoredSeqs(*store);
  for (uint64_t s = 191; s <= 200; ++s) EXPECT_TRUE(seqs.count(s)) << s;
  EXPECT_TRUE(store->Verify().ok()) << store->Verify().ToString();
}

TEST(RetentionTest, ByteBoundWithoutReservoirDropsOldestFirst) {
  ScratchDir dir("retention");
  Options o = TestOptions();
  o.retention.max_bytes = 20 * 1024;
  auto store = OpenOrDie(o, dir.path());
  AppendRange(*store, 0, 100, 10, 1000);
  auto seqs = StoredSeqs(*store);
  ASSERT_FALSE(seqs.empty());
  EXPECT_EQ(*seqs.rbegin(), 100u);
  EXPECT_EQ(*seqs.rbegin() - *seqs.begin() + 1, seqs.size());  // a contiguous suffix
  EXPECT_LE(store->GetStats()->bytes, 20u * 1024);
}

TEST(RetentionTest, AgeBoundEvictsExpiredEventsAndRefusesOldOnes) {
  ScratchDir dir("retention");
  testing::TestClock clock;
  Options o = TestOptions(clock);
  o.retention.max_age_seconds = 1000;
  auto store = OpenOrDie(o, dir.path());
  int64_t now = clock.seconds->load();
  feedback::Event old_event = MakeEvent("old"), new_event = MakeEvent("new");
  old_event.time = {now - 900, 0};
  new_event.time = {now - 100, 0};
  ASSERT_TRUE(store->Append(old_event).ok());
  ASSERT_TRUE(store->Append(new_event).ok());
  *clock.seconds += 200;  // "old" is now 1100 s old
  feedback::Event trigger = MakeEvent("trigger2");
  trigger.time = {now + 200, 0};
  ASSERT_TRUE(store->Append(trigger).ok());
  EXPECT_EQ(store->Get("old").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->Get("new").ok());
  EXPECT_GE(store->GetStats()->evicted_age, 1u);
  feedback::Event too_old = MakeEvent("too-old");
  too_old.time = {now - 5000, 0};
  auto r = store->Append(too_old);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("max_age_seconds"), std::string::npos);
  EXPECT_TRUE(store->Verify().ok());
}

TEST(RetentionTest, SmallerMaxEventsOnReopenShrinksTheReservoir) {
  ScratchDir dir("retention");
  { AppendRange(*OpenOrDie(Bounded(100, 10), dir.path()), 0, 300); }
  auto store = OpenOrDie(Bounded(50, 10), dir.path());
  auto st = store->GetStats();
  EXPECT_LE(st->events, 50u);
  EXPECT_EQ(st->reservoir_capacity, 40u);
  EXPECT_TRUE(store->Verify().ok()) << store->Verify().ToString();
  AppendRange(*store, 300, 400);
  EXPECT_EQ(store->GetStats()->events, 50u);
}

TEST(RetentionTest, ReopeningUnboundedKeepsEverything) {
  ScratchDir dir("retention");
  { AppendRange(*OpenOrDie(Bounded(100, 10), dir.path()), 0, 300); }
  auto store = OpenOrDie(Bounded(0, 0), dir.path());
  EXPECT_EQ(store->GetStats()->events, 100u);
  AppendRange(*store, 300, 400);
  EXPECT_EQ(store->GetStats()->events, 200u);
  EXPECT_TRUE(store->Verify().ok()) << store->Verify().ToString();
}

}  // namespace
}  // namespace attune::replay
