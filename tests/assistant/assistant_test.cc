// The whole loop end to end on a tiny model, through the app API: feedback in
// -> window opens -> candidate -> gate -> swap -> answers change; a poisoned
// candidate is rejected; a forced bad version is rolled back by the
// thumbs-down watch and the previous answers return.
#include "attune/assistant.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/assistant/tiny_assistant.h"

namespace attune {
namespace {

using attune::testing::Fixture;

struct TempDir : attune::testing::TempDir {
  TempDir() : attune::testing::TempDir("attune_assistant_") {}
};

AssistantOptions TinyOptions(const std::string& dir) {
  AssistantOptions o = attune::testing::TinyAssistantOptions(dir);
  o.generation.max_tokens = 8;
  o.poll_interval = std::chrono::milliseconds(20);
  o.window.min_new_events = 4;
  o.window.min_idle_minutes = 5;
  o.gate.max_replay_regression = 0.02;
  o.health.window = 4;
  return o;
}

feedback::Event Demo(const std::string& id, const std::string& q, const std::string& a) {
  feedback::Event e;
  e.id = id;
  e.user_id = "u";
  e.context = {{feedback::Role::kUser, q}};
  e.signal = feedback::Demonstration{a};
  return e;
}

trainer::DeviceState Idle(bool idle) {
  trainer::DeviceState s;
  s.external_power = idle;
  s.battery_percent = 90;
  s.idle_minutes = idle ? 30 : 0;
  s.temperature_c = 30;
  return s;
}

// Waits (bounded) for the background trainer's first result.
std::optional<trainer::TrainingRunResult> WaitForRun(Assistant& a) {
  for (int i = 0; i < 3000; ++i) {
    auto s = a.GetStatus();
    if (s.last_run && !s.training) return s.last_run;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

TEST(AssistantTest, LearnsInTheBackgroundSwapsRejectsPoisonAndRollsBack) {
  TempDir dir;
  auto opened = Assistant::Open(TinyOptions(dir.path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  a.SetDeviceState(Idle(false));

  auto base = a.Chat({{"user", "my pet?"}});
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_EQ(base->adapter_version, "");

  // Feedback through the API: one correction on a real reply, demonstrations.
  feedback::Event corr;
  corr.user_id = "u";
  corr.signal = feedback::Correction{"cat"};
  auto rec = a.Record(corr, base->response_id);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_FALSE(a.Record(corr, "no-such-response").ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.Record(Demo("d" + std::to_string(i), "my pet?", "cat")).ok());

  // Busy device: nothing trains.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(a.GetStatus().last_run.has_value());
  EXPECT_FALSE(a.GetStatus().window_open);

  a.SetDeviceState(Idle(true));
  auto run = WaitForRun(a);
  ASSERT_TRUE(run.has_value());
  a.SetDeviceState(Idle(false));
  ASSERT_TRUE(run->completed);
  EXPECT_TRUE(run->promoted) << run->gate_summary;
  EXPECT_LT(run->report.new_loss_candidate, run->report.new_loss_parent);
  const std::string good = run->version;

  auto after = a.Chat({{"user", "my pet?"}});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->adapter_version, good);
  EXPECT_NE(after->text, base->text);
  EXPECT_NE(after->text.find("cat"), std::string::npos) << after->text;

  // Poison: contradicting answers from another source (the same user's newer
  // answer would supersede the old one, docs/trainer.md). Replayed old events
  // regress -> rejected.
  for (int i = 0; i < 6; ++i) {
    feedback::Event p = Demo("p" + std::to_string(i), "my pet?", "xq zv");
    p.user_id = "mallory";
    ASSERT_TRUE(a.Record(p).ok());
  }
  auto poisoned = a.TrainNow();
  ASSERT_TRUE(poisoned.ok()) << poisoned.status().ToString();
  EXPECT_FALSE(poisoned->promoted) << poisoned->gate_summary;
  EXPECT_EQ(a.GetStatus().active_version, good);

  // Forced in anyway; thumbs-down on its replies rolls it back.
  ASSERT_TRUE(a.Promote(poisoned->version, /*force=*/true).ok());
  EXPECT_EQ(a.GetStatus().active_version, poisoned->version);
  for (int i = 0; i < 6 && a.GetStatus().active_version != good; ++i) {
    auto r = a.Chat({{"user", "my pet?"}});
    ASSERT_TRUE(r.ok());
    feedback::Event down;
    down.user_id = "u";
    down.signal = feedback::Rating{feedback::Thumb::kDown};
    ASSERT_TRUE(a.Record(down, r->response_id).ok());
  }
  EXPECT_EQ(a.GetStatus().active_version, good);
  auto restored = a.Chat({{"user", "my pet?"}});
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->adapter_version, good);
  EXPECT_EQ(restored->text, after->text);
}

TEST(AssistantTest, OpenNamesTheFailingPart) {
  TempDir dir;
  AssistantOptions o = TinyOptions(dir.path);
  o.model_path = "/nonexistent/model.gguf";
  auto a = Assistant::Open(o);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace attune
