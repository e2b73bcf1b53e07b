#include "attune/trainer/objective.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <mutex>

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

}  // namespace

Result<EncodedExample> Encode(const runtime::Model& model, const TextExample& ex, const EncodeOptions& options) {
  const runtime::Tokenizer* tok = model.tokenizer();
  const runtime::ChatTemplate* tpl = model.chat_template();
  if (!tok || !tpl) return FailedPreconditionError("the model has no tokenizer or chat template to format training examples");
  if (options.max_seq_len < 16) return InvalidArgumentError("max sequence length must be at least 16");
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, tok->Encode(tpl->Render(ex.context, /*add_generation_prompt=*/true)));
  EncodedExample out;
  out.objective = ex.objective;
  out.id = ex.id;
  out.desirable = ex.desirable;
  out.weight = ex.weight;
  const std::string suffix = ex.open_ended ? "" : tpl->TurnSuffix();
  auto chosen = Join(*tok, prompt, ex.completion, suffix, options.max_seq_len, &out.truncated);
  if (!chosen.ok()) return chosen.status().WithContext("example '" + ex.id + "'");
  out.chosen = std::move(*chosen);
  if (ex.objective == Objective::kDpo) {
    auto rejected = Join(*tok, prompt, ex.rejected, suffix, options.max_seq_len, &out.truncated);
    if (!rejected.ok()) return rejected.status().WithContext("example '" + ex.id + "' (rejected)");
    out.rejected = std::move(*rejected);
  }
  return out;
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

}  // namespace

at::Tensor BaseLogProbsAtTargets(const runtime::Model& model, const at::Tensor& base_hidden, const Batch& batch) {
  auto [rows, pos] = TargetIndex(batch);
  at::Tensor h = base_hidden.index({rows, pos});
  return at::log_softmax(runtime::HeadForward(model, h.unsqueeze(0)).squeeze(0), -1);
}

at::Tensor DistillLoss(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch,
                       const at::Tensor& base_logprobs, const at::Tensor& weights, double norm) {
  auto [rows, pos] = TargetIndex(batch);
  at::Tensor h = hidden.index({rows, pos});
  at::Tensor lp = at::log_softmax(runtime::HeadForward(model, h.unsqueeze(0)).squeeze(0), -1);  // [N, V]
  at::Tensor kl = (base_logprobs.exp() * (base_logprobs - lp)).sum(-1);                          // [N]
  return (kl * weights.index_select(0, rows)).sum() / norm;
}

at::Tensor SequenceLogProbs(const runtime::Model& model, const at::Tensor& hidden, const Batch& batch) {
  // Target position p (scored) is predicted by hidden state p - 1.
  at::Tensor target_mask = batch.scored.narrow(1, 1, batch.scored.size(1) - 1) > 0;  // [B, T-1]
  at::Tensor idx = target_mask.nonzero();                                             // [N, 2]
  at::Tensor rows = idx.select(1, 0), pos = idx.select(1, 1);
  at::Tensor h = hidden.index({rows, pos});                                          // [N, H]
  at::Tensor targets = batch.ids.index({rows, pos + 1});                             // [N]
  at::Tensor logits = runtime::HeadForward(model, h.unsqueeze(0)).squeeze(0);        // [N, V]
  at::Tensor lp = at::log_softmax(logits, -1).gather(1, targets.unsqueeze(1)).squeeze(1);
  return at::zeros({hidden.size(0)}, lp.options()).index_add(0, rows, lp);
}

at::Tensor Hidden(const runtime::Model& model, const runtime::LoraWeights* lora, const at::Tensor& ids) {
  at::NoGradGuard ng;
  runtime::AttentionContext ctx = runtime::MakeAttentionContext(model, 0, ids.size(1));
  at::Tensor x = runtime::EmbedTokens(model, ids);
  for (size_t l = 0; l < model.layers().size(); ++l) x = runtime::LayerForward(model, lora, l, x, ctx, nullptr);
  return x;
}

double ForwardBackward(const runtime::Model& model, const runtime::LoraWeights& lora, const at::Tensor& ids,
                       bool checkpointing, const std::function<at::Tensor(const at::Tensor&)>& loss_fn) {
  runtime::AttentionContext ctx = runtime::MakeAttentionContext(model, 0, ids.size(1));
  const size_t L = model.layers().size();
  if (!checkpointing) {
    at::Tensor x = runtime::EmbedTokens(model, ids);
    for (size_t l = 0; l < L; ++l) x = runtime::LayerForward(model, &lora, l, x, ctx, nullptr);
    at::Tensor loss = loss_fn(x);
    loss.backward();
    return loss.item<double>();
  }
  // Pass 1 without a graph: keep each layer's input and the RNG state that
  // its dropout masks come from.
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::vector<at::Tensor> inputs(L), rng(L);
  {
    at::NoGradGuard ng;
    at::Tensor x = runtime::EmbedTokens(model, ids);
    for (size_t l = 0; l < L; ++l) {
      inputs[l] = x;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        rng[l] = gen.get_state();
      }
      x = runtime::LayerForward(model, &lora, l, x, ctx, nullptr);
    }
    inputs.push_back(x);
  }
  at::Tensor after_state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    after_state = gen.get_state();
  }
  at::Tensor top = inputs[L].detach().requires_grad_(true);
  at::Tensor loss = loss_fn(top);
  loss.backward();
  at::Tensor grad = top.grad();
  // Pass 2: recompute each layer with a graph, backward from the gradient
  // that arrived at its output.
  for (size_t l = L; l-- > 0;) {
    at::Tensor x = inputs[l].detach().requires_grad_(l > 0);
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng[l]);
    }
    at::Tensor y = runtime::LayerForward(model, &lora, l, x, ctx, nullptr);
    y.backward(grad);
    if (l > 0) grad = x.grad();
    inputs[l + 1] = at::Tensor();  // free as we go
  }
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(after_state);
  }
  return loss.item<double>();
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
