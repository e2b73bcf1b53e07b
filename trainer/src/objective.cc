#include "attune/trainer/objective.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/custom_function.h>

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "attune/runtime/logit_rows.h"

namespace attune::trainer {

int64_t Sequence::n_scored() const { return std::count(scored.begin(), scored.end(), 1); }

namespace {

Result<Sequence> Join(const runtime::Tokenizer& tok, const std::vector<int32_t>& prompt, const std::string& completion,
                      const std::string& suffix, int64_t max_len, bool* truncated) {
  ASSIGN_OR_RETURN(std::vector<int32_t> comp, tok.Encode(completion, /*parse_special=*/false));
  if (comp.empty()) return InvalidArgumentError("the completion is empty: nothing to learn");
  ASSIGN_OR_RETURN(std::vector<int32_t> suf, tok.Encode(suffix));
  comp.insert(comp.end(), suf.begin(), suf.end());
  std::vector<int32_t> p = prompt;
  // Keep at least a few prompt tokens (the assistant header) for context.
  const int64_t min_prompt = std::min<int64_t>(int64_t(p.size()), 8);
  if (int64_t(comp.size()) > max_len - min_prompt) {
    comp.resize(size_t(std::max<int64_t>(1, max_len - min_prompt)));
    *truncated = true;
  }
  if (int64_t(p.size() + comp.size()) > max_len) {
    p.erase(p.begin(), p.begin() + (int64_t(p.size() + comp.size()) - max_len));
    *truncated = true;
  }
  Sequence s;
  for (int32_t id : p) s.ids.push_back(id), s.scored.push_back(0);
  for (int32_t id : comp) s.ids.push_back(id), s.scored.push_back(1);
  if (s.scored[0] == 1) s.scored[0] = 0;  // the first token has no prefix to predict it from
  if (s.n_scored() == 0) return InvalidArgumentError("the example has no trainable tokens after truncation");
  return s;
}

// `out` holds the objective, id, desirability and weight; this renders the
// context and tokenizes the completion (and a DPO example's rejected one).
Result<EncodedExample> EncodeText(const runtime::Model& model, const std::vector<runtime::ChatMessage>& context,
                                  const std::string& completion, const std::string& rejected, bool open_ended,
                                  const EncodeOptions& options, EncodedExample out) {
  const runtime::Tokenizer* tok = model.tokenizer();
  const runtime::ChatTemplate* tpl = model.chat_template();
  if (!tok || !tpl) return FailedPreconditionError("the model has no tokenizer or chat template to format training examples");
  if (options.max_seq_len < 16) return InvalidArgumentError("max sequence length must be at least 16");
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, tok->Encode(tpl->Render(context, /*add_generation_prompt=*/true)));
  const std::string suffix = open_ended ? "" : tpl->TurnSuffix();
  auto chosen = Join(*tok, prompt, completion, suffix, options.max_seq_len, &out.truncated);
  if (!chosen.ok()) return chosen.status().WithContext("example '" + out.id + "'");
  out.chosen = std::move(*chosen);
  if (out.objective == Objective::kDpo) {
    auto rej = Join(*tok, prompt, rejected, suffix, options.max_seq_len, &out.truncated);
    if (!rej.ok()) return rej.status().WithContext("example '" + out.id + "' (rejected)");
    out.rejected = std::move(*rej);
  }
  return out;
}

// The objective of one of the user's examples: its kind's.
Objective ObjectiveOf(feedback::ExampleKind kind) {
  switch (kind) {
    case feedback::ExampleKind::kSft:
      return Objective::kSft;
    case feedback::ExampleKind::kDpo:
      return Objective::kDpo;
    case feedback::ExampleKind::kKto:
      return Objective::kKto;
  }
  return Objective::kSft;
}

}  // namespace

std::vector<runtime::ChatMessage> ChatOf(const feedback::Example& example) {
  std::vector<runtime::ChatMessage> chat;
  for (const auto& m : example.context) chat.push_back({std::string(feedback::RoleName(m.role)), m.content});
  return chat;
}

Result<EncodedExample> Encode(const runtime::Model& model, const feedback::Example& ex, const EncodeOptions& options) {
  EncodedExample out;
  out.objective = ObjectiveOf(ex.kind);
  out.id = ex.event_id;
  out.desirable = ex.desirable;
  out.weight = ex.weight;
  return EncodeText(model, ChatOf(ex), ex.completion, ex.rejected, /*open_ended=*/false, options, std::move(out));
}

Result<EncodedExample> EncodeAnchor(const runtime::Model& model, const std::string& id, const std::string& prompt,
                                    const std::string& completion, bool open_ended, float weight,
                                    const EncodeOptions& options) {
  EncodedExample out;
  out.objective = Objective::kDistill;
  out.id = id;
  out.weight = weight;
  return EncodeText(model, {{"user", prompt}}, completion, "", open_ended, options, std::move(out));
}

Batch MakeBatch(const std::vector<const Sequence*>& seqs) {
  size_t T = 0;
  for (const auto* s : seqs) T = std::max(T, s->ids.size());
  const int64_t B = int64_t(seqs.size());
  Batch b;
  b.ids = at::zeros({B, int64_t(T)}, at::kLong);
  b.scored = at::zeros({B, int64_t(T)}, at::kFloat);
  auto ids = b.ids.accessor<int64_t, 2>();
  auto sc = b.scored.accessor<float, 2>();
  for (int64_t i = 0; i < B; ++i) {
    for (size_t t = 0; t < seqs[size_t(i)]->ids.size(); ++t) {
      ids[i][int64_t(t)] = seqs[size_t(i)]->ids[t];
      sc[i][int64_t(t)] = seqs[size_t(i)]->scored[t];
    }
  }
  return b;
}

namespace {

// Rows and positions of the hidden states that predict scored tokens.
std::pair<at::Tensor, at::Tensor> TargetIndex(const Batch& batch) {
  at::Tensor idx = (batch.scored.narrow(1, 1, batch.scored.size(1) - 1) > 0).nonzero();
  return {idx.select(1, 0), idx.select(1, 1)};
}

// Rows of logits computed at once: about 32 MiB of floats ([170, 49152] for
// SmolLM2's vocabulary), instead of [scored positions, vocab] several times
// over (logits, log-softmax and their gradients: about 800 MiB at 1020 scored
// positions).
int64_t HeadChunkRows(int64_t vocab) { return std::clamp<int64_t>((int64_t(1) << 23) / std::max<int64_t>(vocab, 1), 16, 1024); }

// The output head followed by a per-row reduction of its log-probabilities,
// one chunk of rows at a time. hn: the normed final hidden states [N, H].
// With `base_lp` [N, V]: KL(base || head) per row; otherwise (`base_lp`
// undefined or empty) log p(target) per row, `targets` [N] (int64). With
// `jac`, also each row's derivative of its value with respect to its hn row
// ([N, H]): (onehot - p) W for a target, (p - p_base) W for the KL. Because every value depends on its own row only,
// backward is then a scaling of these rows, and no [N, V] tensor lives
// between forward and backward.
at::Tensor HeadReduce(const runtime::LinearWeight& head, const at::Tensor& hn, const at::Tensor& targets,
                      const at::Tensor& base_lp, at::Tensor* jac) {
  at::NoGradGuard ng;
  const int64_t n = hn.size(0), chunk = HeadChunkRows(head.out_features());
  const bool kl = base_lp.defined() && base_lp.dim() == 2;
  at::Tensor out = at::empty({n}, at::kFloat);
  if (jac) *jac = at::empty({n, hn.size(1)}, at::kFloat);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t c = std::min(chunk, n - r0);
    at::Tensor lp = head.Mul(hn.narrow(0, r0, c)).contiguous();  // logits [c, V]
    // The values, and with jac the logits' rows become their derivatives:
    // onehot - p for a target, p - p_base for the KL.
    out.narrow(0, r0, c).copy_(kl ? runtime::KlFromBaseRows(lp, base_lp.narrow(0, r0, c), jac != nullptr)
                                  : runtime::LogSoftmaxAtTargets(lp, targets.narrow(0, r0, c), jac != nullptr));
    if (jac) jac->narrow(0, r0, c).copy_(head.MulTransposed(lp));
  }
  return out;
}

struct HeadReduceFn : public torch::autograd::Function<HeadReduceFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hn, const at::Tensor& targets,
                            const at::Tensor& base_lp, int64_t head) {
    runtime::ExactProducts exact;  // the product the row derivatives differentiate
    at::Tensor jac;
    at::Tensor out = HeadReduce(*reinterpret_cast<const runtime::LinearWeight*>(head), hn, targets, base_lp, &jac);
    ctx->save_for_backward({jac});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::Tensor jac = ctx->get_saved_variables()[0];
    return {jac * grad[0].unsqueeze(1), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Normed hidden states at the scored positions, then HeadReduce with a graph
// when `hidden` has one.
at::Tensor HeadRows(const runtime::Model& model, const at::Tensor& hidden, const at::Tensor& rows, const at::Tensor& pos,
                    const at::Tensor& targets, const at::Tensor& base_lp) {
  at::Tensor hn = runtime::HeadNorm(model, hidden.index({rows, pos}));  // [N, H]
  if (hn.requires_grad() && at::GradMode::is_enabled()) {
    // Autograd wants every tensor argument defined.
    const at::Tensor none = at::empty({0}, at::kFloat);
    return HeadReduceFn::apply(hn, targets.defined() ? targets : none, base_lp.defined() ? base_lp : none,
                               reinterpret_cast<int64_t>(&model.output()));
  }
  return HeadReduce(model.output(), hn, targets, base_lp, nullptr);
}

}  // namespace

at::Tensor HeadLogProbs(const runtime::Model& model, const at::Tensor& hn) {
  at::NoGradGuard ng;
  const int64_t n = hn.size(0), chunk = HeadChunkRows(model.output().out_features());
  at::Tensor out = at::empty({n, model.output().out_features()}, at::kFloat);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t c = std::min(chunk, n - r0);
    at::Tensor lp = out.narrow(0, r0, c);
    lp.copy_(model.output().Mul(hn.narrow(0, r0, c)));
    lp.sub_(at::logsumexp(lp, -1, /*keepdim=*/true));
  }
  return out;
}

at::Tensor BaseTargetRows(const runtime::Model& model, const at::Tensor& base_hidden, const Batch& batch) {
  at::NoGradGuard ng;
  auto [rows, pos] = TargetIndex(batch);
  return runtime::HeadNorm(model, base_hidden.index({rows, pos}));
}

at::Tensor BaseLogProbsAtTargets(const runtime::Model& model, const at::Tensor& base_hidden, const Batch& batch) {
  return HeadLogProbs(model, BaseTargetRows(model, base_hidden, batch));
}

at::Tensor DistillLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch,
                       const at::Tensor& base_logprobs, const at::Tensor& weights, double norm,
                       const at::Tensor& position_weights) {
  auto [rows, pos] = TargetIndex(batch);
  at::Tensor kl = HeadRows(model, hidden, rows, pos, at::Tensor(), base_logprobs);  // [N]
  at::Tensor w = weights.index_select(0, rows);
  if (position_weights.defined()) w = w * position_weights;
  return (kl * w).sum() / norm;
}

at::Tensor MarginWeights(const at::Tensor& base_logprobs, double boost) {
  if (!(boost > 0)) return at::Tensor();
  at::NoGradGuard ng;
  const at::Tensor top = std::get<0>(base_logprobs.topk(2, -1));  // [N, 2]
  return top.select(1, 0).sub(top.select(1, 1)).neg_().exp_().mul_(boost).add_(1.0);
}

at::Tensor SequenceLogProbs(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch) {
  // Target position p (scored) is predicted by hidden state p - 1.
  auto [rows, pos] = TargetIndex(batch);
  at::Tensor targets = batch.ids.index({rows, pos + 1});  // [N]
  at::Tensor lp = HeadRows(model, hidden, rows, pos, targets, at::Tensor());
  return at::zeros({hidden.size(0)}, lp.options()).index_add(0, rows, lp);
}

namespace {

// Hands the pages of the freed activations back to the system. glibc keeps
// freed pages that lie between live blocks in its heap, and the next
// micro-batch's blocks land elsewhere: without this the checkpointed peak
// grew from about 730 to 780-845 MiB over the first steps (trainer_bench,
// SmolLM2, 4 x 256); with it, 707. It costs a walk of the heap per
// micro-batch.
void ReleaseFreedMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace

double GraphLayerBytes(const runtime::ModelConfig& c, int64_t rows, int64_t seq, int64_t prefix) {
  // Hidden-state rows and attention scores: the prefix's once (scores
  // prefix x prefix), each row's own positions (scores against all seq).
  const double tokens = double(prefix) + double(rows) * double(seq - prefix);
  const double scores = double(prefix) * double(prefix) + double(rows) * double(seq - prefix) * double(seq);
  return 4.0 * (tokens * double(8 * c.hidden + 3 * c.intermediate) + 2.0 * double(c.n_heads) * scores);
}

size_t GraphLayers(const runtime::ModelConfig& c, int64_t rows, int64_t seq, double mb, int64_t prefix) {
  const double per_layer = GraphLayerBytes(c, rows, seq, prefix);
  if (!(mb > 0) || !(per_layer > 0)) return 0;
  return size_t(std::min(double(c.n_layers), std::floor(mb * 1024 * 1024 / per_layer)));
}

int64_t SharedPrefixLength(const at::Tensor& ids, const runtime::LoraWeights& lora) {
  if (lora.training && lora.dropout > 0) return 0;
  return runtime::CommonPrefixLength(ids);
}

at::Tensor AddNeftuneNoise(const at::Tensor& embeddings, int64_t positions, double alpha) {
  const double mag = alpha / std::sqrt(double(positions) * double(embeddings.size(-1)));
  return embeddings + at::empty_like(embeddings).uniform_(-mag, mag);
}

double ForwardBackward(const runtime::Model& model, const runtime::LoraWeights& lora, const at::Tensor& ids,
                       bool checkpointing, const std::function<at::Tensor(const at::Tensor&)>& loss_fn,
                       size_t graph_layers, int64_t shared_prefix, double neftune_alpha) {
  const int64_t P = shared_prefix == kFindSharedPrefix ? SharedPrefixLength(ids, lora) : shared_prefix;
  // With a shared prefix the layers' hidden states are rows [N, hidden]
  // (runtime::SharedPrefix), else [B, T, hidden].
  const runtime::SharedPrefix sp = P > 0 ? runtime::MakeSharedPrefix(model, ids.size(0), P, ids.size(1))
                                         : runtime::SharedPrefix();
  const runtime::AttentionContext ctx = P > 0 ? runtime::AttentionContext()
                                              : runtime::MakeAttentionContext(model, 0, ids.size(1));
  auto embed = [&] {
    at::Tensor x = P > 0 ? runtime::EmbedShared(model, ids, sp) : runtime::EmbedTokens(model, ids);
    return neftune_alpha > 0 ? AddNeftuneNoise(x, ids.size(1), neftune_alpha) : x;
  };
  auto layer = [&](size_t l, const at::Tensor& x, runtime::LayerKeep* keep) {
    return P > 0 ? runtime::LayerForwardShared(model, &lora, l, x, sp, keep)
                 : runtime::LayerForward(model, &lora, l, x, ctx, nullptr, keep);
  };
  auto loss_of = [&](const at::Tensor& x) { return loss_fn(P > 0 ? runtime::UnshareRows(x, sp) : x); };
  const size_t L = model.layers().size();
  // Layers [0, C) are checkpointed, [C, L) keep their graph.
  const size_t C = checkpointing ? L - std::min(graph_layers, L) : 0;
  if (C == 0) {
    at::Tensor x = embed();
    for (size_t l = 0; l < L; ++l) x = layer(l, x, nullptr);
    at::Tensor loss = loss_of(x);
    loss.backward();
    // No ReleaseFreedMemory here: without checkpointing the peak is the
    // graph's own activations, which every micro-batch allocates again, so
    // handing their pages back only made the next one fault them all in
    // again (trainer_bench, SmolLM2, bf16, 4 x 256, 10 steps: 688 tokens/s
    // with it, 864 without, peak RSS 1944 and 1939 MiB).
    return loss.item<double>();
  }
  // Pass 1 without a graph through the checkpointed layers: keep each one's
  // input and the RNG state that its dropout masks come from.
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::vector<at::Tensor> inputs(C), rng(C);
  std::vector<runtime::LayerKeep> keep(C);
  {
    at::NoGradGuard ng;
    at::Tensor x = embed();
    // The kept inputs live in one block, not among the layers' temporaries,
    // where they would pin the heap and keep the freed temporaries' pages.
    std::vector<int64_t> shape = x.sizes().vec();
    shape.insert(shape.begin(), int64_t(C));
    at::Tensor kept = at::empty(shape, x.options());
    for (size_t l = 0; l < C; ++l) {
      inputs[l] = kept[int64_t(l)].copy_(x);
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        rng[l] = gen.get_state();
      }
      x = layer(l, x, &keep[l]);
    }
    inputs.push_back(x);
  }
  // The layers above them with a graph, the loss, and backward down to the
  // highest checkpointed layer's output.
  at::Tensor top = inputs[C].detach().requires_grad_(true);
  at::Tensor x = top;
  for (size_t l = C; l < L; ++l) x = layer(l, x, nullptr);
  at::Tensor after_state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    after_state = gen.get_state();
  }
  at::Tensor loss = loss_of(x);
  x = at::Tensor();
  loss.backward();
  at::Tensor grad = top.grad();
  top = at::Tensor();
  // Pass 2: recompute each layer with a graph, backward from the gradient
  // that arrived at its output.
  for (size_t l = C; l-- > 0;) {
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng[l]);
    }
    grad = P > 0 ? runtime::LayerBackwardShared(model, &lora, l, inputs[l], sp, grad, /*input_grad=*/l > 0, &keep[l])
                 : runtime::LayerBackward(model, &lora, l, inputs[l], ctx, grad, /*input_grad=*/l > 0, &keep[l]);
    inputs[l + 1] = at::Tensor();  // free as we go
    keep[l] = runtime::LayerKeep();
  }
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(after_state);
  }
  const double value = loss.item<double>();
  ReleaseFreedMemory();
  return value;
}

at::Tensor SftLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& weights,
                   double norm) {
  at::Tensor lp = SequenceLogProbs(model, hidden, batch);
  return -(lp * weights).sum() / norm;
}

at::Tensor DpoLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& ref_logps,
                   const at::Tensor& weights, double beta, double norm) {
  at::Tensor lp = SequenceLogProbs(model, hidden, batch);
  const int64_t n = lp.size(0) / 2;
  at::Tensor pc = lp.narrow(0, 0, n), pr = lp.narrow(0, n, n);
  at::Tensor rc = ref_logps.narrow(0, 0, n), rr = ref_logps.narrow(0, n, n);
  at::Tensor logits = beta * ((pc - rc) - (pr - rr));
  return -(at::log_sigmoid(logits) * weights).sum() / norm;
}

at::Tensor KtoLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch, const at::Tensor& ref_logps,
                   const at::Tensor& desirable, const at::Tensor& weights, double beta, double z0, double norm) {
  at::Tensor r = SequenceLogProbs(model, hidden, batch) - ref_logps;
  at::Tensor des = 1 - at::sigmoid(beta * (r - z0));
  at::Tensor und = 1 - at::sigmoid(beta * (z0 - r));
  at::Tensor per = at::where(desirable > 0, des, und);
  return (per * weights).sum() / norm;
}

}  // namespace attune::trainer
