#include <cmath>
#include <cstdio>

#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

namespace {

// One field's rule: its key, whether the value keeps it, the rule in words
// and the value as given.
struct Rule {
  const char* key;
  bool ok;
  const char* rule;
  std::string value;
};

std::string Text(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", x);
  return b;
}
std::string Text(int64_t x) { return std::to_string(x); }
std::string Text(const std::string& s) { return "'" + s + "'"; }

bool AtLeast(double x, double lo) { return std::isfinite(x) && x >= lo; }
bool Above(double x, double lo) { return std::isfinite(x) && x > lo; }

}  // namespace

Status ValidateTrainerOptions(const TrainerOptions& o, const std::string& prefix) {
  const char* kFinite0 = "a finite number >= 0";
  const char* kFinitePositive = "a finite number > 0";
  const Rule rules[] = {
      {"rank", o.lora.rank >= 1 && o.lora.rank <= 1024, "in 1..1024", Text(o.lora.rank)},
      {"alpha", Above(o.lora.alpha, 0), kFinitePositive, Text(o.lora.alpha)},
      {"dropout", o.lora.dropout >= 0 && o.lora.dropout < 1, "in [0, 1)", Text(o.lora.dropout)},
      {"learning_rate", o.adamw.lr > 0 && o.adamw.lr < 1, "in (0, 1)", Text(o.adamw.lr)},
      {"weight_decay", AtLeast(o.adamw.weight_decay, 0), kFinite0, Text(o.adamw.weight_decay)},
      {"max_steps", o.max_steps >= 1, ">= 1", Text(o.max_steps)},
      {"max_minutes", AtLeast(o.max_minutes, 0), kFinite0, Text(o.max_minutes)},
      {"micro_batch_size", o.micro_batch_size >= 0, ">= 0", Text(o.micro_batch_size)},
      {"grad_accum_steps", o.grad_accum_steps >= 1, ">= 1", Text(o.grad_accum_steps)},
      {"max_tokens_per_step", o.max_tokens_per_step >= 0, ">= 0", Text(o.max_tokens_per_step)},
      {"max_seq_len", o.encode.max_seq_len >= 8, ">= 8", Text(o.encode.max_seq_len)},
      {"graph_memory_mb", AtLeast(o.graph_memory_mb, 0), kFinite0, Text(o.graph_memory_mb)},
      {"base_products", KnownBaseProducts(o.base_products), "\"auto\", \"fp32\" or \"bf16\"", Text(o.base_products)},
      {"threads", o.threads >= 0 && o.threads <= 1024, "in 0..1024", Text(int64_t(o.threads))},
      {"max_memory_mb", Above(o.max_memory_mb, 0), kFinitePositive, Text(o.max_memory_mb)},
      {"sft_weight", AtLeast(o.sft_weight, 0), kFinite0, Text(o.sft_weight)},
      {"dpo_weight", AtLeast(o.dpo_weight, 0), kFinite0, Text(o.dpo_weight)},
      {"kto_weight", AtLeast(o.kto_weight, 0), kFinite0, Text(o.kto_weight)},
      {"dpo_beta", Above(o.dpo_beta, 0), kFinitePositive, Text(o.dpo_beta)},
      {"kto_beta", Above(o.kto_beta, 0), kFinitePositive, Text(o.kto_beta)},
      {"l2_to_parent", AtLeast(o.l2_to_parent, 0), kFinite0, Text(o.l2_to_parent)},
      {"heldout_min_examples", o.heldout_min_examples >= 0, ">= 0", Text(o.heldout_min_examples)},
      {"heldout_every", o.heldout_every >= 1, ">= 1", Text(o.heldout_every)},
      {"rotation", o.rotation >= 0, ">= 0", Text(o.rotation)},
      {"replay_eval_examples", o.replay_eval_examples >= 0, ">= 0", Text(o.replay_eval_examples)},
      {"checkpoint_every_steps", o.checkpoint_every_steps >= 1, ">= 1", Text(o.checkpoint_every_steps)},
      {"early_stopping_patience", o.early_stopping_patience >= 0, ">= 0", Text(o.early_stopping_patience)},
      {"eval_every_steps", o.eval_every_steps >= 1, ">= 1", Text(o.eval_every_steps)},
      {"candidate_scale", o.candidate_scale > 0 && o.candidate_scale <= 1, "in (0, 1]", Text(o.candidate_scale)},
      {"null_space_energy", o.null_space_energy >= 0 && o.null_space_energy < 1, "in [0, 1)",
       Text(o.null_space_energy)},
      {"max_grad_norm", AtLeast(o.max_grad_norm, 0), kFinite0, Text(o.max_grad_norm)},
      {"warmup_steps", o.warmup_steps >= 0, ">= 0", Text(o.warmup_steps)},
      {"lr_schedule", o.lr_schedule == "constant" || o.lr_schedule == "linear", "\"constant\" or \"linear\"",
       Text(o.lr_schedule)},
      {"max_nonfinite_steps", o.max_nonfinite_steps >= 1, ">= 1", Text(o.max_nonfinite_steps)},
      {"anchor_examples", o.anchor_examples >= 0, ">= 0", Text(o.anchor_examples)},
      {"anchor_selection", o.anchor_selection == "first" || o.anchor_selection == "nearest",
       "\"first\" or \"nearest\"", Text(o.anchor_selection)},
      {"anchor_weight", AtLeast(o.anchor_weight, 0), kFinite0, Text(o.anchor_weight)},
      {"anchor_margin_boost", AtLeast(o.anchor_margin_boost, 0), kFinite0, Text(o.anchor_margin_boost)},
      {"anchor_max_tokens", o.anchor_max_tokens >= 1, ">= 1", Text(o.anchor_max_tokens)},
      {"contrast_anchors", o.contrast_anchors >= 0, ">= 0", Text(o.contrast_anchors)},
      {"neftune_alpha", AtLeast(o.neftune_alpha, 0), kFinite0, Text(o.neftune_alpha)},
      {"question_dropout_copies", o.question_dropout_copies >= 0 && o.question_dropout_copies <= 16, "in [0, 16]",
       Text(o.question_dropout_copies)},
      {"question_dropout_p", o.question_dropout_p > 0 && o.question_dropout_p < 1, "in (0, 1)",
       Text(o.question_dropout_p)},
      {"question_dropout_weight", Above(o.question_dropout_weight, 0), kFinitePositive,
       Text(o.question_dropout_weight)},
      {"question_dropout_min_words", o.question_dropout_min_words >= 3 && o.question_dropout_min_words <= 1000,
       "in [3, 1000]", Text(o.question_dropout_min_words)},
  };
  for (const Rule& r : rules) {
    if (!r.ok) return InvalidArgumentError(prefix + r.key + " must be " + r.rule + ", not " + r.value);
  }
  return Status::Ok();
}

}  // namespace attune::trainer
