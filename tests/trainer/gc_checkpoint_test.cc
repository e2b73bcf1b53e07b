// `attune adapters gc` keeps the parent version an interrupted training
// window resumes from, even when nothing else would keep it.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "attune/adapters/registry.h"
#include "attune/trainer/trainer.h"
#include "tests/adapters/test_util.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

TEST(GcCheckpointTest, GcKeepsTheParentOfAnInterruptedWindow) {
  adapters::testing::ScratchDir dir;
  std::vector<std::string> ids;
  {
    auto reg = adapters::Registry::Open(adapters::RegistryOptions{}, dir.path() + "/adapters");
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    // Seven candidates: GC keeps the five newest, so v1 and v2 are eligible.
    for (uint32_t i = 1; i <= 7; ++i) ids.push_back(*(*reg)->Add(adapters::testing::MakeAdapter(i)));
  }
  // An interrupted window that continues from v1.
  runtime::LoadOptions lo;
  lo.chat_template = "chatml";
  auto model = runtime::Model::Load(attune::testing::Fixture("models/tiny_llama.gguf"), lo);
  ASSERT_TRUE(model.ok());
  TrainerOptions o;
  o.lora.rank = 2;
  o.lora.alpha = 4;
  o.anchor_examples = 0;
  TrainInput in;
  feedback::Example e;
  e.event_id = "e";
  e.context = {{feedback::Role::kUser, "my dog?"}};
  e.completion = "Pixel";
  in.new_examples = {e};
  in.window.new_event_ids = {"e"};
  in.window.parent_version = ids[0];
  ASSERT_TRUE(std::filesystem::create_directories(dir.path() + "/checkpoints"));
  ASSERT_TRUE(Trainer(*model, o).Run(in, dir.path() + "/checkpoints/train.ck", [] { return true; }, nullptr).ok());

  const std::string cmd = std::string(ATTUNE_CLI_PATH) + " adapters gc --data-dir " + dir.path() + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto reg = adapters::Registry::Open(adapters::RegistryOptions{}, dir.path() + "/adapters");
  ASSERT_TRUE(reg.ok());
  EXPECT_TRUE((*reg)->Get(ids[0]).ok()) << "gc removed the parent of the checkpoint";
  EXPECT_FALSE((*reg)->Get(ids[1]).ok()) << "gc should still remove what nothing keeps";
}

}  // namespace
}  // namespace attune::trainer
