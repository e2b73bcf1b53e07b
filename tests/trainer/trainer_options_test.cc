// trainer::ValidateTrainerOptions: one table of the trainer's ranges, used
// by the trainer, the C ABI's options and the service's [trainer] section.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "attune/trainer/trainer_options.h"

namespace attune::trainer {
namespace {

TEST(TrainerOptionsTest, TheDefaultsAreValid) {
  EXPECT_TRUE(ValidateTrainerOptions(TrainerOptions{}, "").ok());
}

TEST(TrainerOptionsTest, EachBadValueIsRefusedByItsKeyAfterThePrefix) {
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::pair<std::string, std::function<void(TrainerOptions&)>>> cases = {
      {"rank", [](TrainerOptions& o) { o.lora.rank = 0; }},
      {"rank", [](TrainerOptions& o) { o.lora.rank = 1025; }},
      {"alpha", [&](TrainerOptions& o) { o.lora.alpha = inf; }},
      {"dropout", [](TrainerOptions& o) { o.lora.dropout = 1; }},
      {"learning_rate", [](TrainerOptions& o) { o.adamw.lr = 0; }},
      {"learning_rate", [&](TrainerOptions& o) { o.adamw.lr = nan; }},
      {"weight_decay", [](TrainerOptions& o) { o.adamw.weight_decay = -0.1; }},
      {"max_steps", [](TrainerOptions& o) { o.max_steps = 0; }},
      {"max_minutes", [&](TrainerOptions& o) { o.max_minutes = nan; }},
      {"micro_batch_size", [](TrainerOptions& o) { o.micro_batch_size = -1; }},
      {"grad_accum_steps", [](TrainerOptions& o) { o.grad_accum_steps = 0; }},
      {"max_tokens_per_step", [](TrainerOptions& o) { o.max_tokens_per_step = -1; }},
      {"max_seq_len", [](TrainerOptions& o) { o.encode.max_seq_len = 7; }},
      {"graph_memory_mb", [&](TrainerOptions& o) { o.graph_memory_mb = inf; }},
      {"base_products", [](TrainerOptions& o) { o.base_products = "fp16"; }},
      {"threads", [](TrainerOptions& o) { o.threads = -1; }},
      {"max_memory_mb", [](TrainerOptions& o) { o.max_memory_mb = 0; }},
      {"sft_weight", [](TrainerOptions& o) { o.sft_weight = -1; }},
      {"dpo_beta", [](TrainerOptions& o) { o.dpo_beta = 0; }},
      {"kto_beta", [&](TrainerOptions& o) { o.kto_beta = nan; }},
      {"l2_to_parent", [](TrainerOptions& o) { o.l2_to_parent = -1; }},
      {"heldout_every", [](TrainerOptions& o) { o.heldout_every = 0; }},
      {"checkpoint_every_steps", [](TrainerOptions& o) { o.checkpoint_every_steps = 0; }},
      {"replay_eval_examples", [](TrainerOptions& o) { o.replay_eval_examples = -1; }},
      {"early_stopping_patience", [](TrainerOptions& o) { o.early_stopping_patience = -1; }},
      {"eval_every_steps", [](TrainerOptions& o) { o.eval_every_steps = 0; }},
      {"candidate_scale", [](TrainerOptions& o) { o.candidate_scale = 1.5; }},
      {"null_space_energy", [](TrainerOptions& o) { o.null_space_energy = 1; }},
      {"max_grad_norm", [](TrainerOptions& o) { o.max_grad_norm = -1; }},
      {"warmup_steps", [](TrainerOptions& o) { o.warmup_steps = -1; }},
      {"lr_schedule", [](TrainerOptions& o) { o.lr_schedule = "cosine"; }},
      {"max_nonfinite_steps", [](TrainerOptions& o) { o.max_nonfinite_steps = 0; }},
      {"anchor_examples", [](TrainerOptions& o) { o.anchor_examples = -1; }},
      {"anchor_selection", [](TrainerOptions& o) { o.anchor_selection = "random"; }},
      {"anchor_weight", [](TrainerOptions& o) { o.anchor_weight = -1; }},
      {"anchor_margin_boost", [&](TrainerOptions& o) { o.anchor_margin_boost = -inf; }},
      {"anchor_max_tokens", [](TrainerOptions& o) { o.anchor_max_tokens = 0; }},
      {"contrast_anchors", [](TrainerOptions& o) { o.contrast_anchors = -1; }},
      {"neftune_alpha", [](TrainerOptions& o) { o.neftune_alpha = -5; }},
      {"question_dropout_copies", [](TrainerOptions& o) { o.question_dropout_copies = 17; }},
      {"question_dropout_p", [](TrainerOptions& o) { o.question_dropout_p = 0; }},
      {"question_dropout_weight", [&](TrainerOptions& o) { o.question_dropout_weight = inf; }},
      {"question_dropout_min_words", [](TrainerOptions& o) { o.question_dropout_min_words = 2; }},
  };
  for (const auto& [key, spoil] : cases) {
    TrainerOptions o;
    spoil(o);
    const Status st = ValidateTrainerOptions(o, "options.training.");
    ASSERT_FALSE(st.ok()) << key;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(st.message().rfind("options.training." + key + " must be ", 0), 0u) << st.message();
  }
}

TEST(TrainerOptionsTest, TheMessageGivesTheRuleAndTheValue) {
  TrainerOptions o;
  o.lora.rank = 2000;
  EXPECT_EQ(ValidateTrainerOptions(o, "trainer.").message(), "trainer.rank must be in 1..1024, not 2000");
  o = TrainerOptions{};
  o.lr_schedule = "cosine";
  EXPECT_EQ(ValidateTrainerOptions(o, "").message(), "lr_schedule must be \"constant\" or \"linear\", not 'cosine'");
  // The edges the ranges name are valid.
  o = TrainerOptions{};
  o.lora.rank = 1024;
  o.candidate_scale = 1;
  o.max_grad_norm = 0;
  o.question_dropout_copies = 16;
  o.question_dropout_min_words = 3;
  o.encode.max_seq_len = 8;
  EXPECT_TRUE(ValidateTrainerOptions(o, "").ok()) << ValidateTrainerOptions(o, "").message();
}

}  // namespace
}  // namespace attune::trainer
