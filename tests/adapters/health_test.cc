#include "attune/adapters/health.h"

#include <gtest/gtest.h>

#include <random>

namespace attune::adapters {
namespace {

const std::string kOld = std::string(64, '1');
const std::string kNew = std::string(64, '2');

HealthOptions SmallWindow() {
  HealthOptions o;
  o.window = 10;
  o.max_down_rate_increase = 0.10;
  o.min_baseline_ratings = 10;
  return o;
}

// Feeds `n` ratings of which the first `down` are thumbs-down.
HealthVerdict Feed(HealthMonitor& m, const std::string& v, int n, int down) {
  HealthVerdict last;
  for (int i = 0; i < n; ++i) {
    HealthVerdict h = m.RecordRating(v, i < down);
    if (h.rollback) last = h;
  }
  return last;
}

TEST(HealthMonitor, RollsBackOnThumbsDownStreak) {
  HealthMonitor m(SmallWindow());
  m.SetActive(kOld, "");
  EXPECT_FALSE(Feed(m, kOld, 20, 2).rollback);  // 10 %
  m.SetActive(kNew, kOld);
  HealthVerdict v = Feed(m, kNew, 10, 3);  // 30 % > 10 % + 10 %
  ASSERT_TRUE(v.rollback);
  EXPECT_EQ(v.version, kNew);
  EXPECT_EQ(v.cause, ActivationCause::kRollbackThumbsDown);
  EXPECT_NE(v.reason.find("30.0 %"), std::string::npos) << v.reason;
}

TEST(HealthMonitor, KeepsVersionWithinMargin) {
  HealthMonitor m(SmallWindow());
  m.SetActive(kOld, "");
  Feed(m, kOld, 20, 2);
  m.SetActive(kNew, kOld);
  EXPECT_FALSE(Feed(m, kNew, 10, 2).rollback);  // 20 % is not more than 10 % + 10 %
  // The window was judged: later bad ratings do not trigger.
  EXPECT_FALSE(Feed(m, kNew, 30, 30).rollback);
}

TEST(HealthMonitor, JudgesOnlyAfterAFullWindow) {
  HealthMonitor m(SmallWindow());
  m.SetActive(kOld, "");
  Feed(m, kOld, 20, 0);
  m.SetActive(kNew, kOld);
  for (int i = 0; i < 9; ++i) EXPECT_FALSE(m.RecordRating(kNew, true).rollback);
  EXPECT_TRUE(m.RecordRating(kNew, true).rollback);
}

TEST(HealthMonitor, UsesFallbackBaselineWhenPreviousHasFewRatings) {
  HealthOptions o = SmallWindow();
  o.fallback_baseline_rate = 0.5;
  HealthMonitor m(o);
  m.SetActive(kNew, kOld);
  EXPECT_FALSE(Feed(m, kNew, 10, 5).rollback);  // 50 % vs fallback 50 %
  HealthMonitor m2(o);
  m2.SetActive(kNew, kOld);
  HealthVerdict v = Feed(m2, kNew, 10, 7);
  EXPECT_TRUE(v.rollback);
  EXPECT_NE(v.reason.find("fallback"), std::string::npos);
}

TEST(HealthMonitor, IgnoresRatingsOfOtherVersionsForTheWindow) {
  HealthMonitor m(SmallWindow());
  m.SetActive(kNew, kOld);
  EXPECT_FALSE(Feed(m, kOld, 50, 50).rollback);
  EXPECT_EQ(m.CountsFor(kOld).down, 50);
  EXPECT_EQ(m.CountsFor(kNew).rated, 0);
}

TEST(HealthMonitor, NonFiniteLogitsRollBackAtOnceAndOnlyOnce) {
  HealthMonitor m(SmallWindow());
  m.SetActive(kNew, kOld);
  HealthVerdict v = m.RecordNonFinite(kNew);
  ASSERT_TRUE(v.rollback);
  EXPECT_EQ(v.cause, ActivationCause::kRollbackNan);
  EXPECT_FALSE(m.RecordNonFinite(kNew).rollback);
  EXPECT_FALSE(m.RecordNonFinite(kOld).rollback);  // not the watched version
}

TEST(HealthMonitor, NothingToWatchWithoutAnAdapter) {
  HealthMonitor m(SmallWindow());
  m.SetActive("", kOld);
  EXPECT_FALSE(m.RecordNonFinite("").rollback);
  EXPECT_FALSE(Feed(m, "", 20, 20).rollback);
}

TEST(HealthMonitor, VerdictDependsOnlyOnTheSequence) {
  auto run = [] {
    HealthMonitor m(SmallWindow());
    std::mt19937 rng(42);
    m.SetActive(kOld, "");
    for (int i = 0; i < 30; ++i) (void)m.RecordRating(kOld, rng() % 5 == 0);
    m.SetActive(kNew, kOld);
    for (int i = 0; i < 10; ++i) {
      HealthVerdict v = m.RecordRating(kNew, rng() % 2 == 0);
      if (v.rollback) return v.reason;
    }
    return std::string("none");
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace attune::adapters
