// A data directory with a real replay store and registry and the tiny
// model, for tests of whole training windows.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/replay/store.h"
#include "attune/trainer/training_run.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer::testing {

using attune::testing::Fixture;

struct Loop {
  std::string dir, ck;
  std::shared_ptr<const runtime::Model> model;
  std::unique_ptr<replay::Store> store;
  std::unique_ptr<adapters::Registry> registry;

  explicit Loop(const std::string& name) {
    Open(name);
  }
  void Open(const std::string& name) {
    dir = (std::filesystem::temp_directory_path() / ("attune_window_" + std::to_string(::getpid()) + "_" + name)).string();
    std::filesystem::remove_all(dir);
    EXPECT_TRUE(MakeDirs(dir + "/checkpoints").ok());
    ck = dir + "/checkpoints/train.ck";
    Reopen();
  }
  // Reopens the store and the registry, as a restarted process would.
  void Reopen() {
    store.reset();
    registry.reset();
    if (!model) {
      runtime::LoadOptions lo;
      lo.chat_template = "chatml";
      model = *runtime::Model::Load(Fixture("models/tiny_llama.gguf"), lo);
    }
    auto st = replay::Store::Open(replay::Options{}, dir + "/replay");
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    store = std::move(st).value();
    adapters::RegistryOptions ro;
    ro.gate.max_forgetting_kl = 1e9;  // a random tiny model moves a lot
    auto reg = adapters::Registry::Open(ro, dir + "/adapters");
    EXPECT_TRUE(reg.ok()) << reg.status().ToString();
    registry = std::move(reg).value();
  }
  ~Loop() {
    store.reset();
    registry.reset();
    std::filesystem::remove_all(dir);
  }

  void Add(int from, int to) {
    for (int i = from; i < to; ++i) {
      feedback::Event e;
      e.id = "e" + std::to_string(i);
      e.user_id = "u";
      e.context = {{feedback::Role::kUser, "my fact " + std::to_string(i) + "?"}};
      e.signal = feedback::Demonstration{"fact " + std::to_string(i)};
      ASSERT_TRUE(store->Append(e).ok());
    }
  }

  static TrainingRunOptions Options() {
    TrainingRunOptions o;
    o.trainer.lora.rank = 4;
    o.trainer.lora.alpha = 8;
    o.trainer.max_steps = 6;
    o.trainer.micro_batch_size = 2;
    o.trainer.grad_accum_steps = 1;
    o.trainer.encode.max_seq_len = 48;
    o.trainer.anchor_examples = 0;
    o.trainer.forgetting_prompts = {"hi"};
    o.force = true;  // these tests are about resuming, not the gate
    return o;
  }

  Result<TrainingRunResult> Window(int stop_after_micro_steps = -1, const TrainingRunOptions& o = Options()) {
    int n = 0;
    auto stop = [&] { return stop_after_micro_steps >= 0 && ++n > stop_after_micro_steps; };
    return RunTrainingWindow(model, *store, *registry, ck, o, stop, nullptr);
  }
};

}  // namespace attune::trainer::testing
