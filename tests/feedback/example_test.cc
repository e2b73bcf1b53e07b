#include "attune/feedback/example.h"

#include <gtest/gtest.h>

namespace attune::feedback {
namespace {

Event With(Signal s, std::string response = "the answer") {
  Event e;
  e.id = "e-9";
  e.user_id = "u";
  e.context = {{Role::kSystem, "sys"}, {Role::kUser, "question"}};
  e.response = std::move(response);
  e.signal = std::move(s);
  return e;
}

Example One(const Event& e, const ExampleOptions& o = {}) {
  auto r = ToExamples(e, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), 1u);
  return r->at(0);
}

TEST(ExampleTest, CorrectionIsSftOnTheCorrectedText) {
  Example x = One(With(Correction{"fixed"}));
  EXPECT_EQ(x.kind, ExampleKind::kSft);
  EXPECT_EQ(x.completion, "fixed");
  EXPECT_EQ(x.weight, 1.0f);
  EXPECT_EQ(x.event_id, "e-9");
  ASSERT_EQ(x.context.size(), 2u);
  EXPECT_EQ(x.context[1].content, "question");
}

TEST(ExampleTest, DemonstrationIsSftOnTheDemonstration) {
  Example x = One(With(Demonstration{"ideal"}, ""));
  EXPECT_EQ(x.kind, ExampleKind::kSft);
  EXPECT_EQ(x.completion, "ideal");
}

TEST(ExampleTest, ThumbsUpIsWeightedSftOnTheResponse) {
  Example x = One(With(Rating{Thumb::kUp}));
  EXPECT_EQ(x.kind, ExampleKind::kSft);
  EXPECT_EQ(x.completion, "the answer");
  EXPECT_EQ(x.weight, 0.5f);
}

TEST(ExampleTest, ThumbsDownIsUndesirableKto) {
  Example x = One(With(Rating{Thumb::kDown}));
  EXPECT_EQ(x.kind, ExampleKind::kKto);
  EXPECT_FALSE(x.desirable);
  EXPECT_EQ(x.completion, "the answer");
  EXPECT_EQ(x.weight, 1.0f);
}

TEST(ExampleTest, PreferenceIsADpoPair) {
  Example x = One(With(Preference{"good", "bad"}, ""));
  EXPECT_EQ(x.kind, ExampleKind::kDpo);
  EXPECT_EQ(x.completion, "good");
  EXPECT_EQ(x.rejected, "bad");
}

TEST(ExampleTest, ImplicitActionsAreWeakKtoSignals) {
  struct Case {
    ImplicitAction action;
    bool desirable;
    float weight;
  } cases[] = {{ImplicitAction::kAccepted, true, 0.2f},
               {ImplicitAction::kCopied, true, 0.3f},
               {ImplicitAction::kRegenerated, false, 0.3f},
               {ImplicitAction::kDismissed, false, 0.1f}};
  for (const Case& c : cases) {
    Example x = One(With(Implicit{c.action}));
    EXPECT_EQ(x.kind, ExampleKind::kKto) << ImplicitActionName(c.action);
    EXPECT_EQ(x.desirable, c.desirable) << ImplicitActionName(c.action);
    EXPECT_EQ(x.weight, c.weight) << ImplicitActionName(c.action);
  }
}

TEST(ExampleTest, WeightsComeFromOptions) {
  ExampleOptions o;
  o.rating_up_weight = 0.25f;
  EXPECT_EQ(One(With(Rating{Thumb::kUp}), o).weight, 0.25f);
}

TEST(ExampleTest, EventWithoutSignalIsInvalidArgument) {
  auto r = ToExamples(With(std::monostate{}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("e-9"), std::string::npos);
}

}  // namespace
}  // namespace attune::feedback
