// Options and reports of the LoRA trainer, in a plain header (no LibTorch
// types) so that apps can configure training without LibTorch's headers.
// The trainer's own headers (trainer.h, lora_params.h, adamw.h,
// objective.h) include this one.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attune/core/status.h"
#include "attune/runtime/lora_target.h"

namespace attune::trainer {

struct LoraConfig {
  int64_t rank = 16;          // Default: 16
  double alpha = 32.0;        // Default: 32 (scale 2)
  double dropout = 0.05;      // on the LoRA input while training. Default: 0.05
  bool rslora = false;        // alpha / sqrt(r) instead of alpha / r. Default: false
  // Which of q,k,v,o,gate,up,down are adapted. Default: all seven.
  std::array<bool, runtime::kNumLoraTargets> targets = {true, true, true, true, true, true, true};
};

struct AdamWOptions {
  double lr = 2e-4;           // Default: 2e-4
  double beta1 = 0.9;         // Default: 0.9
  double beta2 = 0.999;       // Default: 0.999
  double eps = 1e-8;          // Default: 1e-8
  double weight_decay = 0.0;  // Default: 0
};

struct EncodeOptions {
  // Longest sequence. Longer examples drop prompt tokens from the left first
  // (the completion is what is learned), then completion tokens from the end.
  // Default: 256.
  int64_t max_seq_len = 256;
};

struct TrainerOptions {
  LoraConfig lora;
  AdamWOptions adamw = {.lr = 1e-3};  // Default: lr 1e-3, no weight decay
  int64_t max_steps = 60;             // optimizer steps per run. Default: 60
  double max_minutes = 0;             // wall-clock cap; 0 = none. Default: 0
  // Examples per micro-batch; 0 picks the largest that fits max_memory_mb.
  // Default: 0
  int64_t micro_batch_size = 0;
  int64_t grad_accum_steps = 2;       // micro-batches per optimizer step. Default: 2
  // Token budget per optimizer step: micro-batches stop being added once it
  // is reached (at least one always runs). 0 = none. Default: 0
  int64_t max_tokens_per_step = 0;
  EncodeOptions encode;               // Default: max_seq_len 256
  bool gradient_checkpointing = true; // Default: true
  // Memory (MB) for the activations of layers that are not checkpointed:
  // with gradient_checkpointing, each micro-batch's top layers keep their
  // autograd graph, as many as this holds by GraphLayerBytes' estimate, and
  // are not recomputed in the backward pass (docs/trainer.md, Memory). 0 = every layer
  // is checkpointed. Not part of max_memory_mb. Default: 0
  double graph_memory_mb = 0;
  // The frozen base's products: "bf16" (runtime::Bf16Products, as PyTorch's
  // bf16 autocast: about 2x the fp32 training speed on a quantized base
  // where the CPU has AVX512-BF16 or AMX, at about 2^-8 relative error per
  // product; elsewhere bf16 is emulated and slower), "fp32", or "auto":
  // bf16 where runtime::CpuHasBf16(), else fp32. The bf16 products run on
  // LibTorch's intra-op threads: for the run, those get OpenBLAS's threads
  // and OpenBLAS gets 1 (runtime::LibTorchProductsThreads).
  // Default: "auto"
  std::string base_products = "auto";
  // Cores the run computes on: fp32 products on OpenBLAS's threads (LibTorch
  // 1), bf16 ones on LibTorch's (OpenBLAS 1); restored after the run. 1 is
  // the setting for a device where something else keeps a core busy: two
  // threads spinning at OpenMP barriers against another process lose more
  // than half their speed (docs/PERFORMANCE.md). 0 = as the process set
  // them (runtime::ConfigureThreads; by default all cores). Default: 0
  int threads = 0;
  // Memory the trainer may use on top of the model's weights. Default: 1024
  double max_memory_mb = 1024;
  double sft_weight = 1.0;            // Default: 1
  double dpo_weight = 1.0;            // Default: 1
  double kto_weight = 1.0;            // Default: 1
  double dpo_beta = 0.1;              // Default: 0.1 (TRL's default)
  double kto_beta = 0.1;              // Default: 0.1
  // Weight of the L2 pull toward the parent adapter: lambda * ||theta - parent||^2.
  // Default: 0 (off)
  double l2_to_parent = 0.0;
  uint64_t seed = 0;                  // data order, LoRA init, dropout. Default: 0
  // Held-back slice: with at least heldout_min_examples new examples, every
  // heldout_every-th one (by position, rotated by `rotation`, so that a
  // later run trains on it) is held out of training and scored. Below the
  // minimum, everything trains and the report says so. Default: 20, 10, 0
  int64_t heldout_min_examples = 20;
  int64_t heldout_every = 10;
  int64_t rotation = 0;
  int64_t checkpoint_every_steps = 20;  // Default: 20
  // The replay loss before and after the window (the gate's replay
  // regression check) is measured on at most this many of the replayed
  // examples, evenly spaced through them (the same ones both times); 0 =
  // all. A window replays up to twice its new events (512), and measuring
  // all of them twice costs a forward pass each. Default: 128
  int64_t replay_eval_examples = 128;
  // Early stopping on the held-out slice: every eval_every_steps steps, and
  // at the window's last step, the held-out loss (mean per-token NLL of its
  // preferred completions) is measured. After early_stopping_patience
  // measurements in a row without a new lowest, the window ends
  // (stop_reason "early_stopping"); whether it ends early or not, the
  // candidate is the adapter of the lowest measurement. It needs a held-out
  // slice (heldout_min_examples above); without one it is off and the notes
  // say so. 0 = off. Default: 0 (off), 5
  int64_t early_stopping_patience = 0;
  int64_t eval_every_steps = 5;
  // Weight-space interpolation of the candidate toward its parent (as
  // WiSE-FT, Wortsman et al. 2022, between a fine-tuned model and the one
  // it started from): each LoRA B becomes parent_B + s * (B - parent_B), A
  // as trained; on a first window (B starts at 0) the learned weight change
  // is exactly s times the trained one. In (0, 1]; 1 = the trained adapter.
  // docs/trainer.md's lever table says what it does. Default: 1
  double candidate_scale = 1.0;
  // Null-space constraint (as AlphaEdit, Fang et al. 2025): before the first
  // step and after every step each LoRA A is projected off the directions
  // that hold this fraction of the second moment of the base model's inputs
  // to its projection on general prompts (the anchor pool and the anchors'
  // answers), so the adapter changes nothing on inputs in their span. In
  // [0, 1); 0 = off. docs/trainer.md's lever table says what it does; the
  // full demo uses 0.97. Default: 0
  double null_space_energy = 0.0;
  // The global L2 norm of each step's gradient is clipped to this (as
  // torch.nn.utils.clip_grad_norm_); 0 = no clipping. Default: 1
  double max_grad_norm = 1.0;
  // The learning rate ramps up linearly over the first warmup_steps steps of
  // each window (every window starts a fresh AdamW). 0 = none. Default: 5
  int64_t warmup_steps = 5;
  // After the warm-up: "constant" (the learning rate stays), or "linear"
  // (it falls linearly to 0 at max_steps, as transformers'
  // get_linear_schedule_with_warmup, its Trainer's default; ScheduledLr in
  // trainer.h). docs/trainer.md's lever table says why the default.
  // Default: "constant"
  std::string lr_schedule = "constant";
  // A step whose loss or gradient is not finite is skipped (no update) and
  // counted; this many in a row end the window early with stop_reason
  // "non_finite" and no candidate. Default: 3
  int64_t max_nonfinite_steps = 3;
  // Prompts for the forgetting KL (scored on the base model's own greedy
  // answers to them); empty = the built-in general set.
  std::vector<std::string> forgetting_prompts;
  // Anti-forgetting anchors: the base model's own greedy answers to this
  // many built-in general prompts (a set disjoint from the forgetting
  // prompts) are mixed into training with a distillation loss toward the
  // base model's full next-token distributions, so the adapter learns the
  // user's facts without rewriting everything else. 0 = off. Default: 32
  int64_t anchor_examples = 32;
  // Which prompts of the built-in pool (trainer/src/anchors.cc): "first"
  // (the pool's head, the same every window) or "nearest" (those sharing the
  // most content words with the window's prompts: questions of the same
  // shape about general knowledge). docs/trainer.md's lever table says why
  // the default. Default: "nearest"
  std::string anchor_selection = "nearest";
  // The prompts anchors are drawn from instead of the built-in pool: an
  // app's own domain, or a model whose general behaviour is not English
  // questions. Keep them disjoint from whatever measures forgetting (the
  // forgetting prompts, an evaluation's general questions). Default: empty
  // (the built-in pool)
  std::vector<std::string> anchor_prompts;
  double anchor_weight = 1.0;         // Default: 1
  // Extra weight on the anchors' positions the base model decides by a thin
  // margin: each position's KL is weighted 1 + boost * exp(-m), m the gap in
  // nats between the base's two likeliest tokens there. The greedy answers
  // an adapter flips are those the base gives by a small margin. 0 = off.
  // Default: 0
  double anchor_margin_boost = 0.0;
  int64_t anchor_max_tokens = 48;     // Default: 48
  // Scope the candidate (adapters::Scope, runtime/scope.h): a probe on the
  // base model's hidden states, fitted on the window's user messages (in)
  // against the anchor pool and the contrast prompts (out), so that the
  // engine lets the base model answer what the window was not about. Not
  // for windows that teach a way of answering everything (a style, a
  // language): those need an adapter that answers every request.
  // Default: false
  bool scope = false;
  // Contrast anchors: up to this many of the prompts the window teaches
  // answers to (SFT: demonstrations, corrections, thumbs-up; not
  // preferences or thumbs-down, which say how to answer) asked about no
  // one ("What is my dog's name?" -> "What is a dog's name?"),
  // distilled toward the base model's answers like the anchors, so the
  // adapter answers with the user's facts only where the question is about
  // the user. English prompts; they are not part of the null-space
  // constraint's general prompts. 0 = off. Default: 0
  int64_t contrast_anchors = 0;
  // Noisy embeddings (NEFTune, Jain et al. 2023, as transformers' and TRL's
  // neftune_noise_alpha): while the window trains on the user's examples
  // (SFT, DPO, KTO; not the anchors' distillation), uniform noise in
  // [-a, a], a = alpha / sqrt(T * hidden) for a micro-batch of T positions,
  // is added to the token embeddings. 0 = off. docs/trainer.md's lever table
  // says what it does. Default: 0
  double neftune_alpha = 0.0;
  // Word dropout on the user's questions: each SFT example of the window's
  // new events (demonstrations, corrections, thumbs-up) whose question has
  // question_dropout_min_words words or more trains this many more times, each copy's question
  // with every word but the last dropped at probability question_dropout_p
  // (at least two kept), at question_dropout_weight x the example's weight.
  // A fact then hangs on whichever of its question's words remain, so a
  // paraphrase reaches it. Held-out examples get no copies; replayed events
  // neither. 0 = off. docs/trainer.md's lever table says what it does.
  // Default: 0
  int64_t question_dropout_copies = 0;
  double question_dropout_p = 0.3;       // in (0, 1). Default: 0.3
  double question_dropout_weight = 0.5;  // > 0. Default: 0.5
  // Shorter questions get no copies: a word dropped from a short question
  // leaves a stub that matches general questions of the same style
  // (docs/trainer.md, "Word dropout in the tree"). In [3, 1000]. Default: 6
  int64_t question_dropout_min_words = 6;
};

// Whether `s` is one of TrainerOptions::base_products' values.
inline bool KnownBaseProducts(const std::string& s) { return s == "auto" || s == "fp32" || s == "bf16"; }

// Checks every field of `options` against its documented range, as the
// trainer does before a window. An error names the field by the key the
// C ABI's JSON and the service's [trainer] section use ("rank",
// "learning_rate", "max_seq_len", ...), after `prefix` ("trainer.",
// "options.training."), with the rule and the value given.
Status ValidateTrainerOptions(const TrainerOptions& options, const std::string& prefix);

struct TrainReport {
  bool completed = false;
  // "max_steps", "max_minutes", "stopped", "non_finite" (see
  // TrainerOptions::max_nonfinite_steps; the notes say more),
  // "early_stopping" (TrainerOptions::early_stopping_patience)
  std::string stop_reason;
  int64_t steps = 0, tokens = 0;
  // Padding the micro-batches of this run's steps added to `tokens` (a
  // micro-batch is as long as its longest sequence); not counted across a
  // resume.
  int64_t padding_tokens = 0;
  // Slots of those micro-batches computed once for all their rows instead of
  // once per row: (rows - 1) x the length of the prefix they share
  // (ForwardBackward's share_prefix; the chat template's system turn); not
  // counted across a resume.
  int64_t shared_prefix_tokens = 0;
  // The step whose adapter is the candidate: `steps`, or with early stopping
  // the step of the lowest held-out loss.
  int64_t kept_step = 0;
  // With early stopping: (step, held-out loss) of each measurement.
  std::vector<std::pair<int64_t, double>> heldout_curve;
  int64_t skipped_steps = 0;          // non-finite steps skipped
  int64_t clipped_steps = 0;          // steps whose gradient norm was clipped
  int64_t micro_batch_size = 0;
  bool bf16_base = false;             // the frozen base's products ran in bf16
  double wall_seconds = 0, tokens_per_second = 0, peak_rss_mb = 0;
  // Where this run's time went: preparing (encoding, the anchors' base
  // answers, the null-space measurement), measuring the parent, the steps
  // (with early stopping's measurements), measuring the candidate (after
  // wall_seconds was taken: not part of it).
  double prepare_seconds = 0, parent_seconds = 0, steps_seconds = 0, candidate_seconds = 0;
  int64_t new_examples = 0, replay_examples = 0, heldout_examples = 0, skipped_examples = 0;
  std::vector<std::string> notes;     // skipped examples, held-out policy, truncation
  // Mean per-token NLL of the preferred completion (SFT target, DPO chosen,
  // desirable KTO completion); NaN when there is nothing to score.
  double new_loss_parent = 0, new_loss_candidate = 0;
  double replay_loss_parent = 0, replay_loss_candidate = 0;
  double heldout_loss_parent = 0, heldout_loss_candidate = 0;
  double dpo_reward_accuracy = 0;     // NaN without pairs
  // What the window's objectives optimise, on its new examples, each lower
  // is better (NaN when the window has none of that kind):
  //   unlikelihood: -log(1 - p) of the undesirable KTO completions (p: their
  //     mean per-token probability), which falls as they become less likely;
  //   dpo_loss: -log sigmoid(beta * margin) of the preference pairs, the
  //     margin measured against the base model.
  double unlikelihood_parent = 0, unlikelihood_candidate = 0;
  double dpo_loss_parent = 0, dpo_loss_candidate = 0;
  // The gate's score when the window holds more than SFT-like examples: the
  // mean, over the objectives present (preferred-completion NLL,
  // unlikelihood, DPO loss), of candidate / parent; the parent scores 1.
  // NaN for a window of SFT-like examples only (the gate then uses new_loss).
  double objective_score_parent = 0, objective_score_candidate = 0;
  double forgetting_kl = 0;           // mean KL(base || adapted) per position
  std::vector<double> loss_curve;     // training loss per step
  std::string ToJson() const;
};

struct TrainProgress {
  int64_t step = 0, max_steps = 0;
  double loss = 0, tokens_per_second = 0, eta_seconds = 0;
};

}  // namespace attune::trainer
