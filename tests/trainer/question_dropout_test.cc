// Word dropout on the user's questions (trainer/src/question_dropout.h).
#include "trainer/src/question_dropout.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace attune::trainer::internal {
namespace {

feedback::Example Taught(const std::string& id, const std::string& question) {
  feedback::Example e;
  e.event_id = id;
  e.context = {{feedback::Role::kSystem, "You are helpful."}, {feedback::Role::kUser, question}};
  e.completion = "Pixel";
  e.weight = 0.8f;
  return e;
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

// Each copy's question is the original's words in order with some dropped,
// the last always kept, at least two kept; the rest of the example is the
// original's, at the given fraction of its weight, under its own id.
TEST(QuestionDropoutTest, CopiesKeepTheLastWordAndAnOrderedSubsetOfTheRest) {
  const auto e = Taught("ev1", "What   is the name of my dog?");
  const auto copies = QuestionDropoutCopies(e, 8, 0.3, 0.5, 3, 7);
  ASSERT_FALSE(copies.empty());
  const auto words = Words(e.context.back().content);
  std::set<std::string> ids;
  bool some_dropped = false;
  for (const auto& c : copies) {
    ids.insert(c.event_id);
    EXPECT_EQ(c.event_id.rfind("ev1#q", 0), 0u) << c.event_id;
    EXPECT_EQ(c.completion, e.completion);
    EXPECT_EQ(c.context.front().content, e.context.front().content) << "only the question changes";
    EXPECT_FLOAT_EQ(c.weight, 0.4f);
    const auto kept = Words(c.context.back().content);
    ASSERT_GE(kept.size(), 2u) << c.context.back().content;
    EXPECT_EQ(kept.back(), "dog?");
    size_t j = 0;
    for (const auto& w : kept) {
      while (j < words.size() && words[j] != w) ++j;
      ASSERT_LT(j, words.size()) << "'" << c.context.back().content << "' is not the question's words in order";
      ++j;
    }
    some_dropped |= kept.size() < words.size();
  }
  EXPECT_EQ(ids.size(), copies.size()) << "each copy has its own id";
  EXPECT_TRUE(some_dropped);
}

// Questions shorter than min_words get no copies: a word dropped from a
// short question leaves a stub that matches general questions.
TEST(QuestionDropoutTest, ShortQuestionsGetNoCopiesBelowMinWords) {
  const auto e = Taught("ev", "whats my major");
  EXPECT_FALSE(QuestionDropoutCopies(e, 2, 0.3, 1.0, 3, 1).empty());
  EXPECT_TRUE(QuestionDropoutCopies(e, 2, 0.3, 1.0, 4, 1).empty());
  const auto six = Taught("ev", "which city do I live in?");
  EXPECT_FALSE(QuestionDropoutCopies(six, 2, 0.3, 1.0, 6, 1).empty());
  EXPECT_TRUE(QuestionDropoutCopies(six, 2, 0.3, 1.0, 7, 1).empty());
}

// The same seed and event give the same copies (a resumed window trains what
// it started with); another seed or another event, other drops.
TEST(QuestionDropoutTest, DrawsDependOnTheSeedAndTheEventOnly) {
  auto questions = [](const std::vector<feedback::Example>& v) {
    std::vector<std::string> q;
    for (const auto& c : v) q.push_back(c.context.back().content);
    return q;
  };
  const std::string q = "In which city did I grow up as a child?";
  const auto a = questions(QuestionDropoutCopies(Taught("ev1", q), 6, 0.3, 1.0, 3, 1));
  EXPECT_EQ(a, questions(QuestionDropoutCopies(Taught("ev1", q), 6, 0.3, 1.0, 3, 1)));
  EXPECT_NE(a, questions(QuestionDropoutCopies(Taught("ev1", q), 6, 0.3, 1.0, 3, 2)));
  EXPECT_NE(a, questions(QuestionDropoutCopies(Taught("ev2", q), 6, 0.3, 1.0, 3, 1)));
}

// No copies for questions of fewer than three words, for examples that are
// not SFT, or with copies <= 0; with a high p, copies that would keep fewer
// than two words are not made.
TEST(QuestionDropoutTest, OnlyTaughtQuestionsOfThreeWordsOrMore) {
  EXPECT_TRUE(QuestionDropoutCopies(Taught("a", "my dog?"), 4, 0.3, 1.0, 3, 1).empty());
  EXPECT_TRUE(QuestionDropoutCopies(Taught("a", "What is my dog?"), 0, 0.3, 1.0, 3, 1).empty());
  auto pair = Taught("b", "How should you answer me?");
  pair.kind = feedback::ExampleKind::kDpo;
  pair.rejected = "at length";
  EXPECT_TRUE(QuestionDropoutCopies(pair, 4, 0.3, 1.0, 3, 1).empty());
  auto down = Taught("c", "Tell me a joke please");
  down.kind = feedback::ExampleKind::kKto;
  down.desirable = false;
  EXPECT_TRUE(QuestionDropoutCopies(down, 4, 0.3, 1.0, 3, 1).empty());
  const auto few = QuestionDropoutCopies(Taught("d", "What is my dog's name?"), 16, 0.99, 1.0, 3, 1);
  EXPECT_LT(few.size(), 16u);
  for (const auto& c : few) EXPECT_GE(Words(c.context.back().content).size(), 2u);
}

}  // namespace
}  // namespace attune::trainer::internal
