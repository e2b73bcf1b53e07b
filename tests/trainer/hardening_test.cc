// The trainer at its edges: LibTorch failures come back as a Status (never
// an exception that ends the caller's thread), and non-finite steps are
// skipped, counted and, when they keep coming, end the window early.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <limits>

#include "attune/core/file.h"
#include "attune/trainer/trainer.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

using attune::testing::Fixture;

std::shared_ptr<const runtime::Model> TinyModel() {
  runtime::LoadOptions lo;
  lo.chat_template = "chatml";
  auto m = runtime::Model::Load(Fixture("models/tiny_llama.gguf"), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

feedback::Example Fact(const std::string& id, const std::string& q, const std::string& a) {
  feedback::Example e;
  e.event_id = id;
  e.context = {{feedback::Role::kUser, q}};
  e.completion = a;
  return e;
}

TrainInput Facts() {
  TrainInput in;
  in.new_examples = {Fact("a", "my dog?", "Pixel"), Fact("b", "my cat?", "Miso"), Fact("c", "my city?", "Lyon"),
                     Fact("d", "my car?", "blue")};
  return in;
}

TrainerOptions Small() {
  TrainerOptions o;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o.max_steps = 6;
  o.micro_batch_size = 1;
  o.grad_accum_steps = 1;
  o.encode.max_seq_len = 48;
  o.anchor_examples = 0;
  o.forgetting_prompts = {"hi"};
  o.seed = 5;
  return o;
}

// The tiny model has 256 positions: a longer sequence makes LibTorch throw.
std::string LongerThanTheContext() { return std::string(400, 'x'); }

// The bug: only the step loop caught c10::Error; the forgetting KL (and the
// base answer generation behind it) ran unguarded after training.
TEST(TrainerHardeningTest, LibTorchErrorInTheForgettingKlIsAStatusNotAnException) {
  TrainerOptions o = Small();
  o.forgetting_prompts = {LongerThanTheContext()};
  Result<TrainOutcome> r = InternalError("not run");
  EXPECT_NO_THROW(r = Trainer(TinyModel(), o).Run(Facts(), "", nullptr, nullptr));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("LibTorch"), std::string::npos) << r.status().message();
}

// Parent evaluation ran before the guarded loop.
TEST(TrainerHardeningTest, LibTorchErrorInTheParentEvaluationIsAStatusNotAnException) {
  TrainerOptions o = Small();
  o.encode.max_seq_len = 1024;  // longer than the model's context: the encoder keeps it
  TrainInput in = Facts();
  in.new_examples.push_back(Fact("long", "my story?", LongerThanTheContext()));
  Result<TrainOutcome> r = InternalError("not run");
  EXPECT_NO_THROW(r = Trainer(TinyModel(), o).Run(in, "", nullptr, nullptr));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

bool AllFinite(const std::vector<at::Tensor>& ts) {
  for (const auto& t : ts) {
    if (!at::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

// The bug: a non-finite step went straight into AdamW and poisoned every
// parameter; the run went on to max_steps and failed only at the gate.
TEST(TrainerHardeningTest, NonFiniteStepIsSkippedAndCountedAndTheAdapterStaysFinite) {
  TrainInput in = Facts();
  feedback::Example bad = Fact("bad", "my boat?", "red");
  bad.weight = std::numeric_limits<float>::infinity();
  in.new_examples.push_back(bad);
  TrainerOptions o = Small();
  o.max_steps = 10;
  auto r = Trainer(TinyModel(), o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->report.completed);
  EXPECT_EQ(r->report.steps, 10);
  EXPECT_GT(r->report.skipped_steps, 0);
  EXPECT_TRUE(AllFinite(r->adapter));
  EXPECT_TRUE(std::isfinite(r->report.new_loss_candidate));
}

TEST(TrainerHardeningTest, WindowThatCannotMakeAFiniteAdapterEndsEarlyWithAReport) {
  TrainInput in = Facts();
  for (auto& e : in.new_examples) e.weight = std::numeric_limits<float>::infinity();
  TrainerOptions o = Small();
  o.max_steps = 50;
  o.max_nonfinite_steps = 3;
  const std::string ck = (std::filesystem::temp_directory_path() / ("attune_hardening_" + std::to_string(::getpid()) + ".ck")).string();
  auto r = Trainer(TinyModel(), o).Run(in, ck, nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->report.completed);
  EXPECT_EQ(r->report.stop_reason, "non_finite");
  EXPECT_EQ(r->report.steps, 0);
  EXPECT_EQ(r->report.skipped_steps, 3);
  EXPECT_TRUE(r->adapter.empty());
  EXPECT_FALSE(PathExists(ck)) << "resuming would repeat the same steps";
  bool explained = false;
  for (const auto& n : r->report.notes) explained |= n.find("non-finite") != std::string::npos;
  EXPECT_TRUE(explained);
}

TEST(TrainerHardeningTest, LargeGradientsAreClippedToMaxGradNorm) {
  TrainerOptions o = Small();
  o.max_steps = 4;
  TrainInput in = Facts();
  for (auto& e : in.new_examples) e.weight = 1e6f;
  auto big = Trainer(TinyModel(), o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->report.clipped_steps, 4);
  o.max_grad_norm = 0;  // off
  auto off = Trainer(TinyModel(), o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->report.clipped_steps, 0);
}

TEST(TrainerHardeningTest, LearningRateWarmsUpInEveryWindow) {
  TrainerOptions o = Small();
  o.max_steps = 1;
  o.warmup_steps = 4;
  o.adamw.lr = 1e-2;
  TrainInput in = Facts();
  auto r = Trainer(TinyModel(), o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  TrainerOptions no_warmup = o;
  no_warmup.warmup_steps = 0;
  auto full = Trainer(TinyModel(), no_warmup).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(full.ok());
  // LoRA's B starts at zero, so after one step |B| is the step size.
  double warm = 0, cold = 0;
  for (size_t i = 0; i < r->adapter.size(); ++i) {
    if (r->names[i].back() != 'b') continue;
    warm = std::max(warm, r->adapter[i].abs().max().item<double>());
    cold = std::max(cold, full->adapter[i].abs().max().item<double>());
  }
  EXPECT_NEAR(warm / cold, 1.0 / 5.0, 0.02) << "step 1 of a 4-step warm-up runs at lr / 5";
}

}  // namespace
}  // namespace attune::trainer
