// The anchors' prompt pool and its selection (trainer/src/anchors.h).
#include "trainer/src/anchors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/runtime/test_util.h"

namespace attune::trainer::internal {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(AnchorsTest, FirstTakesThePoolsHeadAndNearestTheSameShape) {
  auto first = SelectAnchors(AnchorPool(), {"What is my favourite color?"}, 4, "first");
  EXPECT_EQ(first, (std::vector<size_t>{0, 1, 2, 3}));
  auto nearest = SelectAnchors(AnchorPool(), {"What is my favourite color?", "Which instrument do I play?"}, 5, "nearest");
  ASSERT_EQ(nearest.size(), 5u);
  for (size_t i : nearest) {
    const std::string p = Lower(AnchorPool()[i]);
    EXPECT_TRUE(p.find("color") != std::string::npos || p.find("instrument") != std::string::npos) << p;
  }
  EXPECT_EQ(SelectAnchors(AnchorPool(), {}, 1000, "nearest").size(), AnchorPool().size());
  EXPECT_TRUE(SelectAnchors(AnchorPool(), {"x"}, 0, "nearest").empty());
}

// TrainerOptions::anchor_prompts replaces the pool: selection indexes it.
TEST(AnchorsTest, AnAppsOwnPoolIsSelectedFromLikeTheBuiltInOne) {
  const std::vector<std::string> pool = {"river?", "Which bird sings at dawn?", "apple", "What colour is a robin?"};
  EXPECT_EQ(SelectAnchors(pool, {"my dog?"}, 2, "first"), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(SelectAnchors(pool, {"Which bird is blue?"}, 1, "nearest"), (std::vector<size_t>{1}));
  EXPECT_EQ(SelectAnchors(pool, {"apple?"}, 10, "nearest"), (std::vector<size_t>{2, 0, 1, 3}));
}

// An anchor is trained on (distilled toward the base model's answer), so a
// question the evaluation asks must never be one: retention would measure
// what the anchors taught back.
TEST(AnchorsTest, ThePoolHoldsNoQuestionThePersonasEvaluate) {
  std::set<std::string> pool;
  for (const auto& p : AnchorPool()) {
    EXPECT_TRUE(pool.insert(Lower(p)).second) << "twice in the pool: " << p;
  }
  for (const char* name : {"sam", "ines", "kofi"}) {
    std::ifstream in(attune::testing::Fixture(std::string("../../examples/personas/") + name + ".json"));
    auto j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << name;
    for (const auto& g : j["general"]) {
      EXPECT_EQ(pool.count(Lower(g["question"].get<std::string>())), 0u) << name << ": " << g["question"];
    }
  }
}

}  // namespace
}  // namespace attune::trainer::internal
