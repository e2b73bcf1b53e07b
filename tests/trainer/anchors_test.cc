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

// Contrast anchors ask the window's questions of no one; a prompt with no
// first-person word has no contrast.
TEST(AnchorsTest, DepersonalizeAsksTheQuestionOfNoOne) {
  EXPECT_EQ(Depersonalize("What is my dog's name?"), "What is a dog's name?");
  EXPECT_EQ(Depersonalize("My degree?"), "A degree?");
  EXPECT_EQ(Depersonalize("Who am I married to?"), "Who are people married to?");
  EXPECT_EQ(Depersonalize("what do i study"), "what do people study");
  EXPECT_EQ(Depersonalize("What do I do when I am tired?"), "What do people do when people are tired?");
  EXPECT_EQ(Depersonalize("Which doctor looks after me?"), "Which doctor looks after people?");
  EXPECT_EQ(Depersonalize("Tell me the name of my dog."), "Tell me the name of a dog.");
  EXPECT_EQ(Depersonalize("Where I'm from, is it cold?"), "Where people are from, is it cold?");
  EXPECT_EQ(Depersonalize("Is this mine?"), "Is this theirs?");
  EXPECT_EQ(Depersonalize("What is the capital of France?"), "");
  EXPECT_EQ(Depersonalize("Mystery novels: amid, imagine, memes"), "");
}

TEST(AnchorsTest, ContrastPromptsAreDistinctAndSpreadOverTheWindow) {
  const std::vector<std::string> window = {"What is my dog's name?", "what is MY dog's name?", "Capital of France?",
                                           "Where do I live?", "Where do I work?", "When is my birthday?"};
  EXPECT_EQ(ContrastPrompts(window, 10),
            (std::vector<std::string>{"What is a dog's name?", "Where do people live?", "Where do people work?",
                                      "When is a birthday?"}));
  EXPECT_EQ(ContrastPrompts(window, 2), (std::vector<std::string>{"What is a dog's name?", "Where do people work?"}));
  EXPECT_TRUE(ContrastPrompts(window, 0).empty());
}

}  // namespace
}  // namespace attune::trainer::internal
