// Mutated window-policy files, training checkpoints and model config.json:
// every one fails with a clear error or loads, and nothing throws or
// crashes. (These parsers live in the LibTorch modules, so they run in the
// regular build; the torch-free parsers also run under ASan and UBSan.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "attune/core/file.h"
#include "attune/trainer/trainer.h"
#include "attune/trainer/window.h"
#include "tests/core/mutate.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

using attune::testing::Fixture;
using attune::testing::FuzzIterations;
using attune::testing::Mutate;

std::string Temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attune_tfuzz_" + std::to_string(::getpid()) + "_" + name)).string();
}

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(TrainerFuzzTest, MutatedWindowPolicyFilesFailCleanlyOrParse) {
  const std::string seed = R"({"require_external_power": true, "min_battery_percent": 40, "min_idle_minutes": 10,
    "max_temperature_c": 42, "hours": [22, 6], "min_new_events": 8, "unknown": "deny"})";
  ASSERT_TRUE(ParseWindowPolicy(seed, "seed").ok());
  std::mt19937 rng(41);
  const int n = FuzzIterations(3000);
  int parsed = 0;
  for (int it = 0; it < n; ++it) {
    Result<WindowPolicy> p = InternalError("not run");
    EXPECT_NO_THROW(p = ParseWindowPolicy(Mutate(seed, rng, it), "policy.json"));
    if (!p.ok()) {
      EXPECT_NE(p.status().message().find("policy.json"), std::string::npos) << p.status().message();
      continue;
    }
    ++parsed;
    EXPECT_GE(p->start_hour, -1);
    EXPECT_LT(p->start_hour, 24);
    EXPECT_LT(p->end_hour, 24);
    (void)EvaluateWindow(*p, DeviceState{}, 3);
  }
  EXPECT_GT(parsed, 0);
}

std::shared_ptr<const runtime::Model> Tiny() {
  runtime::LoadOptions lo;
  lo.chat_template = "chatml";
  auto m = runtime::Model::Load(Fixture("models/tiny_llama.gguf"), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

TEST(TrainerFuzzTest, MutatedCheckpointsFailCleanlyOrLoad) {
  TrainerOptions o;
  o.lora.rank = 2;
  o.lora.alpha = 4;
  o.encode.max_seq_len = 32;
  o.anchor_examples = 0;
  TrainInput in;
  feedback::Example e;
  e.event_id = "e";
  e.context = {{feedback::Role::kUser, "my dog?"}};
  e.completion = "Pixel";
  in.new_examples = {e};
  in.window.new_event_ids = {"e"};
  const std::string ck = Temp("train.ck");
  ASSERT_TRUE(Trainer(Tiny(), o).Run(in, ck, [] { return true; }, nullptr).ok());  // stops at once, saves
  auto seed = ReadFile(ck);
  ASSERT_TRUE(seed.ok());
  std::mt19937 rng(42);
  const int n = FuzzIterations(1500);
  int loaded = 0;
  for (int it = 0; it < n; ++it) {
    Write(ck, Mutate(*seed, rng, it, /*head=*/1024));
    Result<WindowIdentity> w = InternalError("not run");
    EXPECT_NO_THROW(w = ReadCheckpointWindow(ck));
    if (w.ok()) {
      ++loaded;
      continue;
    }
    const StatusCode c = w.status().code();
    EXPECT_TRUE(c == StatusCode::kDataLoss || c == StatusCode::kUnsupported) << w.status().ToString();
    EXPECT_NE(w.status().message().find(ck), std::string::npos) << w.status().message();
  }
  std::filesystem::remove(ck);
  EXPECT_GT(loaded, 0) << "some header mutations (digits of a loss value, say) still load";
}

TEST(TrainerFuzzTest, MutatedModelConfigFailsCleanlyOrLoads) {
  auto seed = ReadFile(Fixture("models/tiny_llama/config.json"));
  ASSERT_TRUE(seed.ok());
  const std::string dir = Temp("hf_model");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::create_symlink(std::filesystem::absolute(Fixture("models/tiny_llama/model.safetensors")),
                                  dir + "/model.safetensors");
  Write(dir + "/config.json", *seed);
  {
    runtime::LoadOptions lo;
    lo.allow_missing_tokenizer = true;  // config.json is the input under test
    auto m = runtime::Model::Load(dir, lo);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
  }
  std::mt19937 rng(43);
  const int n = FuzzIterations(600) / 2;  // each load builds a model
  int loaded = 0;
  for (int it = 0; it < n; ++it) {
    Write(dir + "/config.json", Mutate(*seed, rng, it));
    Result<std::shared_ptr<const runtime::Model>> m = InternalError("not run");
    runtime::LoadOptions lo;
    lo.allow_missing_tokenizer = true;  // config.json is the input under test
    EXPECT_NO_THROW(m = runtime::Model::Load(dir, lo));
    if (m.ok()) {
      ++loaded;
      continue;
    }
    EXPECT_NE(m.status().code(), StatusCode::kInternal) << "bad input is not a bug: " << m.status().ToString();
    EXPECT_NE(m.status().message().find(dir), std::string::npos) << m.status().message();
  }
  std::filesystem::remove_all(dir);
  EXPECT_GT(loaded, 0);
}

}  // namespace
}  // namespace attune::trainer
