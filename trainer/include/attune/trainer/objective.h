// Training objectives over the shared model: example encoding with the chat
// template, SFT / DPO / KTO losses, and forward + backward with optional
// per-layer gradient checkpointing.
//
// Token alignment follows transformers: the logits at position t score the
// token at t + 1; only completion tokens (and the end-of-turn suffix) are
// scored, prompt tokens are masked.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/feedback/example.h"
#include "attune/runtime/chat_template.h"
#include "attune/runtime/model.h"
#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

// kDistill: match the base model's full next-token distribution on the
// completion (KL(base || adapted)); used for anti-forgetting anchors.
enum class Objective { kSft, kDpo, kKto, kDistill };

// A token sequence with the positions that are scored.
struct Sequence {
  std::vector<int64_t> ids;
  std::vector<uint8_t> scored;  // scored[t] = 1: ids[t] is a target
  int64_t n_scored() const;
};

struct EncodedExample {
  Objective objective = Objective::kSft;
  std::string id;
  Sequence chosen;    // the completion (SFT, DPO chosen, KTO)
  Sequence rejected;  // DPO only
  bool desirable = true;
  float weight = 1.0f;
  bool truncated = false;
};

// EncodeOptions lives in trainer_options.h.

// The chat an example's completion answers (its context as the chat
// template's messages).
std::vector<runtime::ChatMessage> ChatOf(const feedback::Example& example);

// Renders one of the user's examples (from feedback::ToExamples) with the
// chat template and tokenizes it. FailedPrecondition when the model has no
// tokenizer or chat template; InvalidArgument when the example yields no
// scored token.
Result<EncodedExample> Encode(const runtime::Model& model, const feedback::Example& example, const EncodeOptions& options);

// A distillation anchor (Objective::kDistill): `prompt` asked by the user,
// `completion` the base model's own answer; `open_ended`: the answer was cut
// off, so no end-of-turn suffix is appended (the model is not taught to stop
// there). Errors as Encode's.
Result<EncodedExample> EncodeAnchor(const runtime::Model& model, const std::string& id, const std::string& prompt,
                                    const std::string& completion, bool open_ended, float weight,
                                    const EncodeOptions& options);

// Right-padded batch: ids int64 [B, T], scored float [B, T].
struct Batch {
  at::Tensor ids, scored;
};
Batch MakeBatch(const std::vector<const Sequence*>& seqs);

// Sum of log p(target) over the scored positions of each row, from the final
// hidden states [B, T, hidden] (the output head runs only where needed).
// Returns [B].
at::Tensor SequenceLogProbs(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch);

// `embeddings` plus NEFTune's noise: uniform in [-a, a] for each element,
// a = alpha / sqrt(positions * hidden) (transformers'
// neftune_post_forward_hook, positions being the batch's sequence length),
// drawn from the default CPU generator.
at::Tensor AddNeftuneNoise(const at::Tensor& embeddings, int64_t positions, double alpha);

// Runs the model with `lora`, applies loss_fn to the final hidden states and
// backpropagates into the LoRA tensors (their .grad() accumulate). With
// `checkpointing` only each layer's input is kept and layers are recomputed
// one at a time during backward (dropout masks are replayed exactly), except
// the top `graph_layers`, which keep their graph and are not recomputed (all
// of them: as without checkpointing). The first `shared_prefix` positions,
// the same in every row, run once (runtime::LayerForwardShared) instead of
// once per row: the same loss and gradients up to the order in which
// products sum. kFindSharedPrefix: SharedPrefixLength(ids, lora); 0: none;
// otherwise at most that. `neftune_alpha` > 0 adds NEFTune's noise to the
// token embeddings (TrainerOptions::neftune_alpha; the shared prefix's
// rows draw it once, as they run once). Returns the loss value.
inline constexpr int64_t kFindSharedPrefix = -1;
double ForwardBackward(const runtime::Model& model, const runtime::LoraWeights& lora, const at::Tensor& ids,
                       bool checkpointing, const std::function<at::Tensor(const at::Tensor&)>& loss_fn,
                       size_t graph_layers = 0, int64_t shared_prefix = kFindSharedPrefix,
                       double neftune_alpha = 0);

// How many leading positions of ids [B, T] ForwardBackward runs once: the
// tokens every row has in common from the start (the chat template's system
// turn, a DPO pair's prompt; runtime::CommonPrefixLength), at most T - 1; 0
// when under kMinSharedPrefix, for a single row, or with LoRA dropout in
// training (the prefix's rows would share their dropout masks).
using runtime::kMinSharedPrefix;
int64_t SharedPrefixLength(const at::Tensor& ids, const runtime::LoraWeights& lora);

// Estimated bytes of one layer's autograd activations for a micro-batch of
// `rows` sequences of `seq` tokens (LoRA on every target) whose first
// `prefix` positions run once (ForwardBackward's shared_prefix), in fp32:
// 4 * (tokens * (8 hidden + 3 intermediate) + 2 heads * scores), tokens =
// prefix + rows * (seq - prefix) hidden-state rows, scores = prefix^2 +
// rows * (seq - prefix) * seq attention scores; for the normed inputs,
// queries, keys and values before and after RoPE, the attention's output,
// the residuals, gate, up and their SwiGLU, and the attention's scores
// while they live. On SmolLM2 it gives the measured difference in peak RSS
// between the demo's window with and without checkpointing (docs/trainer.md).
double GraphLayerBytes(const runtime::ModelConfig& c, int64_t rows, int64_t seq, int64_t prefix = 0);
// How many top layers of such a micro-batch keep their graph in `mb` MB
// (ForwardBackward's graph_layers): at most all of them.
size_t GraphLayers(const runtime::ModelConfig& c, int64_t rows, int64_t seq, double mb, int64_t prefix = 0);

// Losses on hidden states. Each returns a scalar already divided by `norm`
// (so micro-batches of one step can be summed).
//  SFT: sum_i w_i * NLL_i / norm (norm = scored tokens of the step).
//  DPO (Rafailov et al. 2023, TRL's sigmoid loss):
//    -logsigmoid(beta * ((pc - rc) - (pr - rr))) * w / norm (norm = pairs).
//    hidden rows: the chosen sequences, then the rejected ones.
//  KTO (Ethayarajh et al. 2024, TRL's kto_loss): desirable
//    w_d * (1 - sigmoid(beta * (r - z0))), undesirable
//    w_u * (1 - sigmoid(beta * (z0 - r))), r = policy - reference log-prob,
//    z0 the KL reference point (>= 0, detached).
at::Tensor SftLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& weights,
                   double norm);
at::Tensor DpoLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& ref_logps,
                   const at::Tensor& weights, double beta, double norm);
// Distillation toward the base model (anti-forgetting):
//   sum over scored positions of KL(base || adapted) * w / norm
// (norm = scored tokens of the step). `base_logprobs` [N, vocab] are the base
// model's log-probabilities at the scored positions, in SequenceLogProbs order:
// BaseLogProbsAtTargets(m, h, b) == HeadLogProbs(m, BaseTargetRows(m, h, b)).
// BaseTargetRows are the normed final hidden states at those positions
// ([N, hidden], a vocabulary's worth smaller than the log-probabilities: what
// a trainer keeps of the base between steps); HeadLogProbs runs the output
// head over such rows, a chunk at a time.
at::Tensor BaseLogProbsAtTargets(const runtime::Model& model, const at::Tensor& base_hidden, const Batch& batch);
at::Tensor BaseTargetRows(const runtime::Model& model, const at::Tensor& base_hidden, const Batch& batch);
at::Tensor HeadLogProbs(const runtime::Model& model, const at::Tensor& hn);
// `position_weights` [N] (undefined = all 1) weigh each scored position's KL
// besides its example's weight.
at::Tensor DistillLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch,
                       const at::Tensor& base_logprobs, const at::Tensor& weights, double norm,
                       const at::Tensor& position_weights = at::Tensor());
// The anchors' per-position weights 1 + boost * exp(-m) (TrainerOptions::
// anchor_margin_boost), m the gap between the two largest of each row of
// `base_logprobs` [N, vocab]; undefined when boost is 0.
at::Tensor MarginWeights(const at::Tensor& base_logprobs, double boost);
at::Tensor KtoLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& ref_logps,
                   const at::Tensor& desirable, const at::Tensor& weights, double beta, double z0, double norm);

}  // namespace attune::trainer
