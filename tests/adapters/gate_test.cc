#include "attune/adapters/gate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::PassingInput;

TEST(Gate, PassesCandidateThatLearnedWithoutRegressing) {
  GateDecision d = EvaluateGate(GateOptions{}, PassingInput());
  EXPECT_TRUE(d.passed) << d.Summary();
  EXPECT_EQ(d.Summary(), "passed");
}

TEST(Gate, RejectsCandidateThatDidNotLearnTheNewEvents) {
  GateInput in = PassingInput();
  in.new_loss = 1.99;  // 0.5 % drop; the default needs 2 %
  GateDecision d = EvaluateGate(GateOptions{}, in);
  EXPECT_FALSE(d.passed);
  ASSERT_EQ(d.failures.size(), 1u);
  EXPECT_NE(d.failures[0].find("did not learn the new events"), std::string::npos);
}

TEST(Gate, NewLossMarginIsInclusive) {
  GateInput in = PassingInput();
  in.new_loss_parent = 1.0;
  in.new_loss = 0.98;
  EXPECT_TRUE(EvaluateGate(GateOptions{}, in).passed);
}

TEST(Gate, RejectsReplayRegressionBeyondMargin) {
  GateInput in = PassingInput();
  in.replay_loss = 1.5 * 1.03;
  GateDecision d = EvaluateGate(GateOptions{}, in);
  EXPECT_FALSE(d.passed);
  EXPECT_NE(d.Summary().find("regressed on replayed events"), std::string::npos);
  in.replay_loss = 1.5 * 1.01;
  EXPECT_TRUE(EvaluateGate(GateOptions{}, in).passed);
}

// The regression: a third window's candidate (ines, three windows, the demo's
// setting) was rejected for a replay loss of 0.001351 against the active
// version's 0.0005508 (allowed 0.0005619), a rise that changes no answer;
// the window's events, the user's correction among them, were quarantined.
TEST(Gate, ARiseOfAReplayLossThatStaysNearZeroIsNoRegression) {
  GateInput in = PassingInput();
  in.replay_loss_active = 0.0005508;
  in.replay_loss = 0.001351;
  GateDecision d = EvaluateGate(GateOptions{}, in);
  EXPECT_TRUE(d.passed) << d.Summary();
  in.replay_loss = 0.0201;  // over the floor and the relative bound
  d = EvaluateGate(GateOptions{}, in);
  EXPECT_FALSE(d.passed);
  EXPECT_NE(d.Summary().find("allowed <= 0.02"), std::string::npos) << d.Summary();
  in.replay_loss = 0.001351;
  GateOptions relative_only;
  relative_only.replay_loss_floor = 0;
  EXPECT_FALSE(EvaluateGate(relative_only, in).passed);
  in.replay_loss = std::nan("");
  EXPECT_FALSE(EvaluateGate(GateOptions{}, in).passed);
}

// The regression: at a floor of 0.005, a second window's candidate (kofi,
// three windows, seed 1) was rejected for a replay loss of 0.005015 against
// the active version's 0.003173 (allowed 0.005); its six facts were
// quarantined. The poisoned windows the gate must reject replay at 0.11 and
// more (the demo's: 0.1113 against 0.07957).
TEST(Gate, AReplayLossOfFiveThousandthsIsNoRegression) {
  GateInput in = PassingInput();
  in.replay_loss_active = 0.003173;
  in.replay_loss = 0.005015;
  GateDecision d = EvaluateGate(GateOptions{}, in);
  EXPECT_TRUE(d.passed) << d.Summary();
  in.replay_loss_active = 0.07957;
  in.replay_loss = 0.1113;
  d = EvaluateGate(GateOptions{}, in);
  EXPECT_FALSE(d.passed);
  EXPECT_NE(d.Summary().find("regressed on replayed events"), std::string::npos) << d.Summary();
}

TEST(Gate, HeldOutLossMustBeNoWorseWhenPresent) {
  GateInput in = PassingInput();
  in.heldout_loss = 2.01;
  in.heldout_loss_active = 2.0;
  EXPECT_FALSE(EvaluateGate(GateOptions{}, in).passed);
  in.heldout_loss = 2.0;
  EXPECT_TRUE(EvaluateGate(GateOptions{}, in).passed);
  in.heldout_loss_active.reset();
  EXPECT_FALSE(EvaluateGate(GateOptions{}, in).passed);
}

TEST(Gate, RejectsForgettingKlAboveBound) {
  GateInput in = PassingInput();
  in.forgetting_kl = 0.3;
  EXPECT_FALSE(EvaluateGate(GateOptions{}, in).passed);
  GateOptions loose;
  loose.max_forgetting_kl = 0.5;
  EXPECT_TRUE(EvaluateGate(loose, in).passed);
}

TEST(Gate, NaNMetricsFail) {
  GateInput in = PassingInput();
  in.new_loss = std::nan("");
  in.forgetting_kl = std::nan("");
  GateDecision d = EvaluateGate(GateOptions{}, in);
  EXPECT_FALSE(d.passed);
  EXPECT_EQ(d.failures.size(), 2u);
}

TEST(Gate, ReportsEveryFailedRule) {
  GateInput in = PassingInput();
  in.new_loss = 3;
  in.replay_loss = 3;
  in.forgetting_kl = 1;
  EXPECT_EQ(EvaluateGate(GateOptions{}, in).failures.size(), 3u);
}

TEST(Gate, StoredReportRoundTripsThroughMetrics) {
  GateInput in = PassingInput("abcd");
  in.heldout_loss = 1.0;
  in.heldout_loss_active = 1.1;
  std::map<std::string, double> metrics;
  std::map<std::string, std::string> config;
  StoreGateInput(in, metrics, config);
  auto back = GateInputFromMetrics(metrics, config);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->new_loss, in.new_loss);
  EXPECT_EQ(back->heldout_loss, in.heldout_loss);
  EXPECT_EQ(back->active_version, "abcd");
}

TEST(Gate, MissingStoredReportIsFailedPrecondition) {
  auto r = GateInputFromMetrics({{"train.loss", 1.0}}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("eval.new_loss"), std::string::npos);
}

}  // namespace
}  // namespace attune::adapters
