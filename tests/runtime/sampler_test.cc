#include "attune/runtime/sampler.h"

#include <gtest/gtest.h>

#include <map>

namespace attune::runtime {
namespace {

TEST(SamplerTest, GreedyPicksTheLargestLogit) {
  Sampler s(SamplingOptions{});
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.Sample(l.data(), 4, {}), 1);
}

TEST(SamplerTest, RepetitionPenaltyDemotesSeenTokens) {
  SamplingOptions o;
  o.repetition_penalty = 2.0f;
  Sampler s(o);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(s.Sample(l.data(), 4, {1}), 3);
}

TEST(SamplerTest, SameSeedGivesSameSequence) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 42;
  Sampler a(o), b(o);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l1 = {1, 1, 1, 1, 1}, l2 = l1;
    EXPECT_EQ(a.Sample(l1.data(), 5, {}), b.Sample(l2.data(), 5, {}));
  }
}

TEST(SamplerTest, TopKOneIsGreedyAndTopPKeepsTheNucleus) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.top_k = 1;
  Sampler k1(o);
  std::vector<float> l = {0, 5, 0, 4.9f};
  EXPECT_EQ(k1.Sample(l.data(), 4, {}), 1);
  o.top_k = 0;
  o.top_p = 0.5f;  // token 1 alone holds > 50% of the mass
  Sampler p(o);
  std::vector<float> l2 = {0, 5, 0, 3};
  std::map<int, int> seen;
  for (int i = 0; i < 100; ++i) {
    auto c = l2;
    seen[p.Sample(c.data(), 4, {})]++;
  }
  EXPECT_EQ(seen[1], 100);
}

TEST(SamplerTest, TemperatureSamplingFollowsTheDistribution) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 7;
  Sampler s(o);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    std::vector<float> l = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
    ones += s.Sample(l.data(), 2, {}) == 1;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
}

}  // namespace
}  // namespace attune::runtime
