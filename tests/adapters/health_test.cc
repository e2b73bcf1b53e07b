#include "attune/adapters/health.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "attune/core/file.h"

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

std::string HealthFile(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attune_health_" + std::to_string(::getpid()) + "_" + name)).string();
}

// The bug: the counts lived in memory only, so a restart half-way through a
// failing window forgot the thumbs-down and the bad version kept serving.
TEST(HealthMonitor, SavedStateCarriesAFailingWindowAcrossARestart) {
  const std::string path = HealthFile("restart");
  {
    HealthMonitor m(SmallWindow());
    m.SetActive(kOld, "");
    Feed(m, kOld, 20, 2);
    m.SetActive(kNew, kOld);
    EXPECT_FALSE(Feed(m, kNew, 5, 3).rollback);
    ASSERT_TRUE(m.Save(path).ok());
  }
  HealthMonitor restarted(SmallWindow());
  ASSERT_TRUE(restarted.Load(path).ok());
  restarted.SetActive(kNew, kOld);  // the same activation, seen again at start-up
  EXPECT_EQ(restarted.CountsFor(kOld).rated, 20);
  HealthVerdict v = Feed(restarted, kNew, 5, 0);  // 3 of 10 down in the whole window
  EXPECT_TRUE(v.rollback) << "the first half of the window was forgotten";
  std::filesystem::remove(path);
}

TEST(HealthMonitor, LoadOfAnAbsentFileIsAFreshStartAndADamagedOneIsDataLoss) {
  HealthMonitor m(SmallWindow());
  EXPECT_TRUE(m.Load(HealthFile("absent")).ok());
  const std::string path = HealthFile("damaged");
  m.SetActive(kNew, kOld);
  Feed(m, kNew, 3, 1);
  ASSERT_TRUE(m.Save(path).ok());
  auto good = ReadFile(path);
  ASSERT_TRUE(good.ok());
  for (const std::string& bad : {std::string(""), good->substr(0, good->size() - 3), *good + "count x 1 5\n",
                                 std::string("attune-health 2\n")}) {
    ASSERT_TRUE(WriteFileAtomic(path, bad).ok());
    HealthMonitor other(SmallWindow());
    Status st = other.Load(path);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << bad;
    EXPECT_NE(st.message().find(path), std::string::npos);
    EXPECT_EQ(other.CountsFor(kNew).rated, 0) << "nothing is half-loaded";
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace attune::adapters
