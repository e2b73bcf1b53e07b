// Newer feedback supersedes older: which answer an event teaches, to which
// question, and when a newer one of the same user overrides it.
#include "attune/feedback/supersede.h"

#include <gtest/gtest.h>

namespace attune::feedback {
namespace {

Event Teach(const std::string& user, const std::string& question, Signal signal, const std::string& response = "") {
  Event e;
  e.id = "e";
  e.user_id = user;
  e.context = {{Role::kSystem, "Be brief."}, {Role::kUser, question}};
  e.response = response;
  e.signal = std::move(signal);
  return e;
}

TEST(SupersedeTest, EachSignalTeachesItsAnswer) {
  EXPECT_EQ(TaughtAnswer(Teach("u", "q", Correction{"Lisbon."})), "lisbon");
  EXPECT_EQ(TaughtAnswer(Teach("u", "q", Demonstration{"  I live in   Porto!"})), "i live in porto");
  EXPECT_EQ(TaughtAnswer(Teach("u", "q", Preference{"Porto", "Lisbon"})), "porto");
  EXPECT_EQ(TaughtAnswer(Teach("u", "q", Rating{Thumb::kUp}, "Faro")), "faro");
  EXPECT_EQ(TaughtAnswer(Teach("u", "q", Implicit{ImplicitAction::kCopied}, "Faro")), "faro");
  EXPECT_FALSE(TaughtAnswer(Teach("u", "q", Rating{Thumb::kDown}, "Faro")));
  EXPECT_FALSE(TaughtAnswer(Teach("u", "q", Implicit{ImplicitAction::kRegenerated}, "Faro")));
  EXPECT_FALSE(TaughtAnswer(Teach("u", "q", Rating{Thumb::kUp})));  // nothing to teach
}

TEST(SupersedeTest, TheQuestionIsTheLastUserMessageNormalised) {
  Event e = Teach("u", "  Where do I   LIVE? ", Correction{"x"});
  EXPECT_EQ(QuestionKey(e), "where do i live");
  e.context.push_back({Role::kAssistant, "Lisbon."});
  EXPECT_EQ(QuestionKey(e), "where do i live");
  e.context = {{Role::kSystem, "s"}};
  EXPECT_EQ(QuestionKey(e), "");
}

TEST(SupersedeTest, ANewerDifferentAnswerOfTheSameUserSupersedes) {
  const Event lisbon = Teach("u", "Where do I live?", Correction{"Lisbon."});
  const Event lisbon_again = Teach("u", "where do i live", Demonstration{"lisbon"});
  const Event porto = Teach("u", "Where do I live?", Correction{"Porto."});
  const Event other_user = Teach("v", "Where do I live?", Correction{"Faro."});
  AnswerIndex index;
  index.Add(7, porto);  // any order
  index.Add(3, lisbon);
  index.Add(4, lisbon_again);
  index.Add(9, other_user);
  EXPECT_TRUE(index.Superseded(3, lisbon));
  EXPECT_TRUE(index.Superseded(4, lisbon_again));
  EXPECT_FALSE(index.Superseded(7, porto)) << "the newest answer stands";
  EXPECT_FALSE(index.Superseded(9, other_user)) << "another user's answer is theirs";
  EXPECT_FALSE(index.Superseded(2, Teach("u", "Where do I live?", Correction{"Porto"})))
      << "an older event with the same answer is not contradicted";
  EXPECT_FALSE(index.Superseded(1, Teach("u", "Where do I live?", Rating{Thumb::kDown}, "Lisbon")))
      << "an event that teaches no answer is never superseded";
  EXPECT_EQ(index.size(), 2u);
}

}  // namespace
}  // namespace attune::feedback
