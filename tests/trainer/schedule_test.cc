// The learning-rate schedule (ScheduledLr) against transformers'
// get_linear_schedule_with_warmup (tests/fixtures/trainer/lr_schedule.json,
// tools/make_trainer_fixtures.py --only lr_schedule).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "attune/trainer/trainer.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

TEST(ScheduleTest, LinearDecayIsTransformersScheduleAfterTheWarmUp) {
  std::ifstream in(testing::Fixture("trainer/lr_schedule.json"));
  ASSERT_TRUE(in) << "missing fixture trainer/lr_schedule.json";
  const auto doc = nlohmann::json::parse(in);
  ASSERT_GE(doc["cases"].size(), 3u);
  for (const auto& c : doc["cases"]) {
    TrainerOptions o;
    o.lr_schedule = "linear";
    o.adamw.lr = c["lr"].get<double>();
    o.warmup_steps = c["warmup_steps"].get<int64_t>();
    o.max_steps = c["max_steps"].get<int64_t>();
    const auto& want = c["lr_per_step"];
    ASSERT_EQ(int64_t(want.size()), o.max_steps);
    for (int64_t step = 0; step < o.max_steps; ++step) {
      const double lr = ScheduledLr(o, step);
      if (step < o.warmup_steps) {
        // Ours starts at lr / (warmup + 1) where transformers starts at 0;
        // both rise linearly to lr.
        EXPECT_NEAR(lr, o.adamw.lr * double(step + 1) / double(o.warmup_steps + 1), 1e-12);
        EXPECT_GE(lr, want[size_t(step)].get<double>());
      } else {
        EXPECT_NEAR(lr, want[size_t(step)].get<double>(), 1e-12) << "lr " << o.adamw.lr << ", warm-up " << o.warmup_steps
                                                                  << ", step " << step << " of " << o.max_steps;
      }
    }
    // The constant schedule keeps the peak after the warm-up.
    o.lr_schedule = "constant";
    EXPECT_DOUBLE_EQ(ScheduledLr(o, o.max_steps - 1), o.adamw.lr);
  }
}

}  // namespace
}  // namespace attune::trainer
