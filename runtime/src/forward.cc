// The Llama-family forward pass (transformers' modeling_llama / modeling_qwen2
// semantics): RMSNorm -> attention with rotate-half RoPE and grouped-query
// heads -> residual -> RMSNorm -> SwiGLU MLP -> residual.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attune/runtime/model.h"
#include "runtime/src/bf16.h"
#include "runtime/src/bf16_gemm.h"
#include "runtime/src/norm_rope.h"
#include "runtime/src/swiglu.h"
#include "runtime/src/kernels/activations.h"
#include "runtime/src/kernels/thread_pool.h"

namespace attune::runtime {
namespace {

// An operand of a product: in bf16 under Bf16Products (as autocast casts the
// operands of matmul and linear), else as it is. Products come back to fp32.
at::Tensor Operand(const at::Tensor& t) { return Bf16Products::active() ? CastBf16(t) : t; }

// x rounded to bf16 once for the base products of the weights that share
// it (q, k, v; gate, up) under Bf16Products; else undefined.
at::Tensor SharedBf16(const LinearWeight& w, const at::Tensor& x) {
  if (!Bf16Products::active() || !w.quantized()) return {};
  at::NoGradGuard ng;
  return Bf16Copy(x);
}

// A frozen quantized projection and its LoRA under Bf16Products, in one
// product each: y = x Wᵀ + scale · (xl Aᵀ) Bᵀ, with xl the LoRA's input (x,
// or x after dropout), all operands bf16 as autocast makes them, and the
// LoRA's product added into y in fp32 by oneDNN: no [.., out] bf16 tensor,
// no widening, no separate sum, and x rounded once for both. The bf16
// copies are kept for backward.
struct Bf16Lora {
  at::Tensor xl_b, a_b, b_b, t_b;  // xl [m, in], A [r, in], B [out, r], t = xl Aᵀ [m, r]
};

// Without `value`, only what backward keeps is computed, and y is
// uninitialized: for a product whose value no one reads (LayerBackward's
// down projection, and gate and up when their values were kept).
at::Tensor ProjectBf16(const LinearWeight& w, const at::Tensor& x, const at::Tensor& x_bf16, const at::Tensor& xl,
                       const at::Tensor& a, const at::Tensor& b, double scale, Bf16Lora* keep, bool value = true) {
  at::NoGradGuard ng;
  const int64_t in = w.in_features(), out = w.out_features(), r = a.size(0);
  const at::Tensor xb = x_bf16.defined() ? x_bf16 : Bf16Copy(x);
  at::Tensor y;
  if (value) {
    y = w.Mul(x, xb);
  } else {
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    y = at::empty(sizes, at::kFloat);
  }
  const int64_t m = y.numel() / out;
  Bf16Lora l;
  l.xl_b = (xl.is_same(x) ? xb : Bf16Copy(xl)).reshape({m, in});
  l.a_b = Bf16Copy(a);
  l.b_b = Bf16Copy(b);
  at::Tensor t = at::empty({m, r}, at::kFloat);
  Bf16GemmShape s;
  s.m = m, s.n = r, s.k = in, s.lda = in, s.ldb = in, s.ldc = r, s.b_transposed = true;
  Bf16Gemm(s, Bf16Data(l.xl_b), Bf16Data(l.a_b), t.data_ptr<float>());
  l.t_b = Bf16Copy(t);
  if (!value) {
    if (keep) *keep = std::move(l);
    return y;
  }
  s = Bf16GemmShape();
  s.m = m, s.n = out, s.k = r, s.lda = r, s.ldb = r, s.ldc = out, s.b_transposed = true, s.accumulate = true;
  s.alpha = float(scale);
  Bf16Gemm(s, Bf16Data(l.t_b), Bf16Data(l.b_b), y.data_ptr<float>());
  if (keep) *keep = std::move(l);
  return y;
}

// Its autograd: dx = g W + (scale · g B) A (the LoRA's part to xl when that
// is not x), dA = (scale · g B)ᵀ xl, dB = scale · gᵀ t; the weight products
// in bf16 with fp32 sums, as autocast computes them.
struct ProjectBf16Fn : public torch::autograd::Function<ProjectBf16Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& xl,
                            const at::Tensor& a, const at::Tensor& b, int64_t weight, int64_t x_bf16, double scale,
                            bool value) {
    const auto* w = reinterpret_cast<const LinearWeight*>(weight);
    ExactProducts exact;  // the product backward differentiates
    Bf16Lora l;
    at::Tensor y = ProjectBf16(*w, x, x_bf16 ? *reinterpret_cast<const at::Tensor*>(x_bf16) : at::Tensor(), xl, a, b,
                               scale, &l, value);
    ctx->saved_data["w"] = weight;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["same"] = xl.is_same(x);
    ctx->saved_data["xl_b"] = l.xl_b;
    ctx->saved_data["a_b"] = l.a_b;
    ctx->saved_data["b_b"] = l.b_b;
    ctx->saved_data["t_b"] = l.t_b;
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::NoGradGuard ng;
    const auto* w = reinterpret_cast<const LinearWeight*>(ctx->saved_data["w"].toInt());
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool same = ctx->saved_data["same"].toBool();
    const at::Tensor xl_b = ctx->saved_data["xl_b"].toTensor(), a_b = ctx->saved_data["a_b"].toTensor(),
                     b_b = ctx->saved_data["b_b"].toTensor(), t_b = ctx->saved_data["t_b"].toTensor();
    const int64_t in = w->in_features(), out = w->out_features(), r = a_b.size(0);
    const at::Tensor g = grad[0].reshape({-1, out}).to(at::kFloat).contiguous();
    const int64_t m = g.size(0);
    const at::Tensor gb = Bf16Copy(g);
    at::Tensor gx = w->MulTransposed(g, gb);  // [m, in]
    at::Tensor gt = at::empty({m, r}, at::kFloat);
    Bf16GemmShape s;
    s.m = m, s.n = r, s.k = out, s.lda = out, s.ldb = r, s.ldc = r;
    Bf16Gemm(s, Bf16Data(gb), Bf16Data(b_b), gt.data_ptr<float>());
    const at::Tensor gt_b = Bf16Copy(gt, float(scale));  // dL/dt
    at::Tensor gxl = same ? gx : at::empty({m, in}, at::kFloat);
    s = Bf16GemmShape();
    s.m = m, s.n = in, s.k = r, s.lda = r, s.ldb = in, s.ldc = in, s.accumulate = same;
    Bf16Gemm(s, Bf16Data(gt_b), Bf16Data(a_b), gxl.data_ptr<float>());
    at::Tensor ga = CastFp32(Bf16Matmul(gt_b.t(), xl_b));
    at::Tensor gbw = CastFp32(Bf16Matmul(gb.t(), t_b), scale);
    auto sizes = grad[0].sizes().vec();
    sizes.back() = in;
    return {gx.view(sizes), same ? at::Tensor() : gxl.view(sizes), ga, gbw, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

// value false: the result's value may be left unspecified (only its graph
// is used); the fused bf16 path (a target with a LoRA) then skips the
// frozen product, the others compute it anyway.
at::Tensor Project(const LayerWeights& L, int target, const at::Tensor& x, const LoraWeights* lora, size_t layer,
                   const at::Tensor& x_bf16 = {}, bool value = true) {
  const LinearWeight& w = L.proj[size_t(target)];
  if (lora && lora->observe) (*lora->observe)(layer, target, x);
  const LoraWeights::Pair* p = lora ? &lora->layers[layer][size_t(target)] : nullptr;
  if (!p || !p->a.defined()) return w.Mul(x, x_bf16);
  at::Tensor xin = lora->training && lora->dropout > 0 ? at::dropout(x, lora->dropout, /*train=*/true) : x;
  if (Bf16Products::active() && w.quantized()) {
    if (!at::GradMode::is_enabled()) return ProjectBf16(w, x, x_bf16, xin, p->a, p->b, lora->scale, nullptr);
    return ProjectBf16Fn::apply(x, xin, p->a, p->b, reinterpret_cast<int64_t>(&w),
                                x_bf16.defined() ? reinterpret_cast<int64_t>(&x_bf16) : int64_t(0), lora->scale,
                                value);
  }
  return w.Mul(x, x_bf16) + CastFp32(at::linear(at::linear(Operand(xin), Operand(p->a)), Operand(p->b)), lora->scale);
}

}  // namespace

const char* LoraTargetName(int target) {
  return adapters::LoraTargetName(adapters::LoraTarget(target)).data();  // names are literals: NUL-terminated
}

AttentionContext MakeAttentionContext(const Model& model, int64_t past, int64_t seq) {
  const ModelConfig& c = model.config();
  AttentionContext ctx;
  ctx.past = past;
  ctx.cos = model.rope_cos().narrow(0, past, seq);
  ctx.sin = model.rope_sin().narrow(0, past, seq);
  if (seq > 1) {
    // Row g*seq + t of a kv head's scores may see keys 0 .. past + t.
    const int64_t S = past + seq;
    at::Tensor qpos = at::arange(past, S, at::kLong).view({seq, 1});
    at::Tensor kpos = at::arange(0, S, at::kLong).view({1, S});
    ctx.mask = at::zeros({seq, S}, at::kFloat).masked_fill(kpos > qpos, -INFINITY).repeat({c.n_heads / c.n_kv_heads, 1});
  }
  return ctx;
}

at::Tensor EmbedTokens(const Model& model, const at::Tensor& tokens) { return model.embedding().Rows(tokens); }

std::vector<PaddedBatch> PadInBatches(const std::vector<std::vector<int64_t>>& sequences, size_t max_batch) {
  std::vector<size_t> order;
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (!sequences[i].empty()) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sequences[a].size() < sequences[b].size(); });
  std::vector<PaddedBatch> batches;
  max_batch = std::max<size_t>(max_batch, 1);
  for (size_t start = 0; start < order.size(); start += max_batch) {
    PaddedBatch b;
    b.members.assign(order.begin() + int64_t(start), order.begin() + int64_t(std::min(order.size(), start + max_batch)));
    b.length = int64_t(sequences[b.members.back()].size());
    b.tokens = at::zeros({int64_t(b.members.size()), b.length}, at::kLong);
    for (size_t r = 0; r < b.members.size(); ++r) {
      const auto& ids = sequences[b.members[r]];
      b.tokens[int64_t(r)].narrow(0, 0, int64_t(ids.size())).copy_(at::tensor(ids, at::kLong));
    }
    batches.push_back(std::move(b));
  }
  return batches;
}

namespace {

// softmax(q kᵀ · scale + mask) v in fp32, q [.., rows, D], k and v [.., S, D];
// the products' operands in bf16 under Bf16Products.
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     double scale) {
  const at::Tensor scores = CastFp32(Bf16Matmul(Operand(q), Operand(k).transpose(-1, -2)), scale, mask);
  return CastFp32(Bf16Matmul(Operand(at::softmax(scores, -1)), Operand(v)));
}

// Attention's autograd without its probabilities: forward keeps the
// operands only (in bf16 under Bf16Products, as the products keep them), and
// backward recomputes the scores and probabilities of this one layer and
// differentiates Attention's own graph on them, so the gradients are those
// of Attention as it is. Autograd through Attention keeps each probability
// twice per layer until backward reaches it (the fp32 softmax and its bf16
// operand: 6 bytes), 14 MB a layer at SmolLM2's 9 heads and 4 x 256 tokens.
struct AttentionFn : public torch::autograd::Function<AttentionFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t mask, double scale) {
    const at::Tensor& m = *reinterpret_cast<const at::Tensor*>(mask);
    at::Tensor qo = Operand(q), ko = Operand(k), vo = Operand(v);
    at::Tensor out = Attention(qo, ko, vo, m, scale);
    ctx->saved_data["q"] = qo;
    ctx->saved_data["k"] = ko;
    ctx->saved_data["v"] = vo;
    ctx->saved_data["mask"] = m;
    ctx->saved_data["scale"] = scale;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::AutoGradMode on(true);
    std::vector<at::Tensor> in;
    for (const char* name : {"q", "k", "v"}) in.push_back(ctx->saved_data[name].toTensor().detach().requires_grad_());
    const at::Tensor out =
        Attention(in[0], in[1], in[2], ctx->saved_data["mask"].toTensor(), ctx->saved_data["scale"].toDouble());
    torch::autograd::variable_list g = torch::autograd::grad({out}, in, {grad[0]});
    // Operand's backward: an fp32 gradient for an input rounded to bf16.
    for (at::Tensor& t : g) t = t.scalar_type() == at::kFloat ? t : Fp32Copy(t);
    return {g[0], g[1], g[2], at::Tensor(), at::Tensor()};
  }
};

// Causal attention under Bf16Products, computed as Attention computes it
// with autocast's roundings (scores q kᵀ in bf16, their softmax in fp32,
// the probabilities rounded to bf16 for the product with v) in one node:
// query t of T sees keys 0 .. past + t, and only those go through the
// softmax (kernels::AttentionSoftmaxBf16) instead of a masked row of fp32
// copies. Forward keeps the bf16 operands, and with keep_scores the scores
// (LayerBackward's graph, which lives for one layer); backward recomputes
// the probabilities from the scores and differentiates them in the same
// pass over each row.
struct CausalBf16 {
  int64_t past = 0, T = 0;
  double scale = 1;
};

// Each row of the bf16 scores sb [.., R, S] to probabilities pb; with dp,
// the row's gradient dL/dscores in place of dL/dprobabilities.
void CausalSoftmaxRows(const at::Tensor& sb, const CausalBf16& c, at::Tensor& pb, at::Tensor* dp) {
  const int64_t S = sb.size(-1), R = sb.size(-2), rows = sb.numel() / S;
  const uint16_t* s = Bf16Data(sb);
  uint16_t* p = Bf16Data(pb);
  uint16_t* d = dp ? Bf16Data(*dp) : nullptr;
  const float scale = float(c.scale);
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> p32(static_cast<size_t>(S));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t valid = std::min(S, c.past + (i % R) % c.T + 1);
      kernels::AttentionSoftmaxBf16(s + i * S, valid, S, scale, p32.data(), p + i * S);
      if (d) kernels::AttentionSoftmaxBf16Backward(p32.data(), d + i * S, valid, S, scale, d + i * S);
    }
  });
}

// The probabilities (bf16) of bf16 q [.., R, D] against bf16 k [.., S, D].
at::Tensor CausalProbs(const at::Tensor& qb, const at::Tensor& kb, const CausalBf16& c, at::Tensor* scores) {
  at::Tensor sb = Bf16Matmul(qb, kb.transpose(-1, -2));
  at::Tensor pb = at::empty_like(sb);
  CausalSoftmaxRows(sb, c, pb, nullptr);
  if (scores) *scores = sb;
  return pb;
}

// What backward needs of a causal attention: its bf16 operands, and the
// scores when kept.
struct CausalSaved {
  at::Tensor qb, kb, vb, sb;
};

// The causal attention's output (fp32) of q, k, v; with `saved`, what its
// backward needs (the scores with keep_scores).
at::Tensor CausalAttentionBf16(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const CausalBf16& c,
                               CausalSaved* saved, bool keep_scores) {
  CausalSaved o{Bf16Copy(q), Bf16Copy(k), Bf16Copy(v), {}};
  const at::Tensor out = Fp32Copy(Bf16Matmul(CausalProbs(o.qb, o.kb, c, keep_scores ? &o.sb : nullptr), o.vb));
  if (saved) *saved = std::move(o);
  return out;
}

struct CausalAttentionBf16Fn : public torch::autograd::Function<CausalAttentionBf16Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, int64_t past, int64_t T, double scale, bool keep_scores) {
    CausalSaved saved;
    const at::Tensor out = CausalAttentionBf16(q, k, v, CausalBf16{past, T, scale}, &saved, keep_scores);
    ctx->save_for_backward({saved.qb, saved.kb, saved.vb, saved.sb});  // sb undefined unless kept
    ctx->saved_data["past"] = past;
    ctx->saved_data["T"] = T;
    ctx->saved_data["scale"] = scale;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::NoGradGuard ng;
    const CausalBf16 c{ctx->saved_data["past"].toInt(), ctx->saved_data["T"].toInt(),
                       ctx->saved_data["scale"].toDouble()};
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &qb = saved[0], &kb = saved[1], &vb = saved[2];
    const at::Tensor sb = saved[3].defined() ? saved[3] : Bf16Matmul(qb, kb.transpose(-1, -2));
    const at::Tensor gb = Bf16Copy(grad[0]);
    at::Tensor ds = Bf16Matmul(gb, vb.transpose(-1, -2)).contiguous();  // dL/dprobabilities, then dL/dscores
    at::Tensor pb = at::empty_like(sb);
    CausalSoftmaxRows(sb, c, pb, &ds);
    at::Tensor dq, dk, dv;
    if (ctx->needs_input_grad(0)) dq = Fp32Copy(Bf16Matmul(ds, kb));
    if (ctx->needs_input_grad(1)) dk = Fp32Copy(Bf16Matmul(ds.transpose(-1, -2), qb));
    if (ctx->needs_input_grad(2)) dv = Fp32Copy(Bf16Matmul(pb.transpose(-1, -2), gb));
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// A layer's output is mid + down: the residual after attention and the MLP's
// down projection. down_value false leaves down's value unspecified (its
// graph is built; LayerBackward).
struct LayerOut {
  at::Tensor mid, down;
};

// Causal attention of q [B, H, T, D] over k and v [B, Hkv, past + T, D]
// (RoPE applied) -> [B, T, H * D]. recompute: LayerBackward's pass, whose
// graph lives for this layer's backward only (attention keeps its
// probabilities there; elsewhere a graph goes through AttentionFn).
at::Tensor Attend(const ModelConfig& c, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const AttentionContext& ctx, bool cache, bool recompute) {
  const int64_t B = q.size(0), T = q.size(2);
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim, G = H / Hkv;
  // Grouped-query attention without repeating K/V: the G query heads of a kv
  // head are stacked along the row axis.
  at::Tensor qg = q.reshape({B, Hkv, G * T, D});
  const double scale = 1.0 / std::sqrt(double(D));
  const bool graph = at::GradMode::is_enabled() && (qg.requires_grad() || k.requires_grad() || v.requires_grad());
  at::Tensor attn;  // [B, Hkv, G*T, D]
  if (Bf16Products::active() && !cache && T > 1) {
    attn = graph ? CausalAttentionBf16Fn::apply(qg, k, v, ctx.past, T, scale, /*keep_scores=*/recompute)
                 : CausalAttentionBf16(qg, k, v, CausalBf16{ctx.past, T, scale}, nullptr, false);
  } else {
    attn = graph && !recompute ? AttentionFn::apply(qg, k, v, reinterpret_cast<int64_t>(&ctx.mask), scale)
                               : Attention(qg, k, v, ctx.mask, scale);
  }
  return attn.view({B, H, T, D}).transpose(1, 2).reshape({B, T, H * D});
}

// shared: x_in holds a SharedPrefix batch's rows [N, hidden] (the prefix's,
// then each row's own); every projection runs over all of them at once and
// only the attention tells the parts apart. Else x_in is [B, T, hidden] and
// ctx its context.
LayerOut LayerParts(const Model& model, const LoraWeights* lora, size_t li, const at::Tensor& x_in,
                    const AttentionContext& ctx, KvCache* cache, bool down_value, LayerKeep* keep,
                    const LayerKeep* kept, bool recompute, const SharedPrefix* shared = nullptr) {
  const ModelConfig& c = model.config();
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim;
  const LayerWeights& L = model.layers()[li];
  at::Tensor h = RmsNorm(x_in, L.attn_norm, c.rms_eps);
  at::Tensor hb = SharedBf16(L.proj[kQ], h);
  at::Tensor q = Project(L, kQ, h, lora, li, hb), k = Project(L, kK, h, lora, li, hb), v = Project(L, kV, h, lora, li, hb);
  if (L.q_bias.defined()) {
    q = q + L.q_bias;
    k = k + L.k_bias;
    v = v + L.v_bias;
  }
  at::Tensor attn;
  if (shared) {
    const int64_t P = shared->prefix, B = shared->batch, T = shared->rest;
    auto part = [&](const at::Tensor& t, int64_t heads, bool prefix) {
      return prefix ? t.narrow(0, 0, P).view({1, P, heads, D}) : t.narrow(0, P, B * T).view({B, T, heads, D});
    };
    const AttentionContext &cp = shared->prefix_ctx, &cr = shared->rest_ctx;
    const at::Tensor kp = Rope(part(k, Hkv, true), cp.cos, cp.sin), vp = part(v, Hkv, true).transpose(1, 2);
    const at::Tensor ap = Attend(c, Rope(part(q, H, true), cp.cos, cp.sin), kp, vp, cp, false, recompute);
    // The rows' own keys and values after the prefix's.
    const at::Tensor kr = at::cat({kp.expand({B, Hkv, P, D}), Rope(part(k, Hkv, false), cr.cos, cr.sin)}, 2);
    const at::Tensor vr = at::cat({vp.expand({B, Hkv, P, D}), part(v, Hkv, false).transpose(1, 2)}, 2);
    const at::Tensor ar = Attend(c, Rope(part(q, H, false), cr.cos, cr.sin), kr, vr, cr, false, recompute);
    attn = at::cat({ap.view({P, H * D}), ar.view({B * T, H * D})});
  } else {
    const int64_t B = x_in.size(0), T = x_in.size(1), S = ctx.past + T;
    q = Rope(q.view({B, T, H, D}), ctx.cos, ctx.sin);    // [B, H, T, D]
    k = Rope(k.view({B, T, Hkv, D}), ctx.cos, ctx.sin);  // [B, Hkv, T, D]
    v = v.view({B, T, Hkv, D}).transpose(1, 2);
    if (cache) {
      cache->k[li].narrow(2, ctx.past, T).copy_(k);
      cache->v[li].narrow(2, ctx.past, T).copy_(v);
      k = cache->k[li].narrow(2, 0, S);
      v = cache->v[li].narrow(2, 0, S);
    }
    attn = Attend(c, q, k, v, ctx, cache != nullptr, recompute);
  }
  at::Tensor x = x_in + Project(L, kO, attn, lora, li);

  h = RmsNorm(x, L.ffn_norm, c.rms_eps);
  hb = SharedBf16(L.proj[kGate], h);
  at::Tensor m;  // silu(gate) * up
  if (kept && kept->kept()) {
    // Graph nodes for gate and up (in this order: their dropout masks come
    // from the generator in turn); their values are the kept ones.
    const at::Tensor gate = Project(L, kGate, h, lora, li, hb, /*value=*/false);
    const at::Tensor up = Project(L, kUp, h, lora, li, hb, /*value=*/false);
    m = SwiGluOfKept(gate, up, kept->gate, kept->up);
  } else {
    at::Tensor gate = Project(L, kGate, h, lora, li, hb), up = Project(L, kUp, h, lora, li, hb);
    const bool bf16 = Bf16Products::active() && L.proj[kGate].quantized() && L.proj[kUp].quantized();
    if (keep && bf16 && !at::GradMode::is_enabled()) {
      keep->gate = Bf16Copy(gate);
      keep->up = Bf16Copy(up);
      m = SwiGluOfBf16(keep->gate, keep->up).view(gate.sizes());
    } else if (bf16 && at::GradMode::is_enabled() && (gate.requires_grad() || up.requires_grad())) {
      // A graph keeps gate and up for the SwiGLU's backward: rounded to bf16
      // (as autocast rounds these products), half the bytes of fp32 ones
      // (6 MB a layer at SmolLM2's 4 x 256 tokens), and the value of the
      // checkpointed path, which computes from the same rounded values.
      m = SwiGluOfKept(gate, up, Bf16Copy(gate), Bf16Copy(up));
    } else {
      m = SwiGlu(gate, up);
    }
  }
  return {x, Project(L, kDown, m, lora, li, {}, down_value)};
}

// Recomputes a layer's parts from x with a graph (parts(xg)), backpropagates
// grad (dL/d its output y = mid + down) and returns dL/dx (undefined without
// input_grad).
template <typename Parts>
at::Tensor LayerBackwardOf(const at::Tensor& x, const at::Tensor& grad, bool input_grad, Parts&& parts) {
  at::Tensor xg = x.detach().requires_grad_(input_grad);
  {
    LayerOut out = parts(xg);
    // y = mid + down: the gradient reaches both as it is. A part with no
    // trainable path is left out (the first layer's attention when only the
    // MLP is adapted: its input needs no gradient).
    std::vector<at::Tensor> ps, grads;
    for (const at::Tensor& part : {out.mid, out.down}) {
      if (part.requires_grad()) ps.push_back(part), grads.push_back(grad);
    }
    if (!ps.empty()) torch::autograd::backward(ps, grads);
  }
  return xg.grad();
}

}  // namespace

at::Tensor LayerForward(const Model& model, const LoraWeights* lora, size_t li, const at::Tensor& x_in,
                        const AttentionContext& ctx, KvCache* cache, LayerKeep* keep) {
  LayerOut out = LayerParts(model, lora, li, x_in, ctx, cache, /*down_value=*/true, keep, nullptr, false);
  return out.mid + out.down;
}

at::Tensor LayerBackward(const Model& model, const LoraWeights* lora, size_t li, const at::Tensor& x,
                         const AttentionContext& ctx, const at::Tensor& grad, bool input_grad, const LayerKeep* kept) {
  return LayerBackwardOf(x, grad, input_grad, [&](const at::Tensor& xg) {
    return LayerParts(model, lora, li, xg, ctx, nullptr, /*down_value=*/false, nullptr, kept, true);
  });
}

SharedPrefix MakeSharedPrefix(const Model& model, int64_t batch, int64_t prefix, int64_t seq) {
  SharedPrefix s;
  s.batch = batch;
  s.prefix = prefix;
  s.rest = seq - prefix;
  s.prefix_ctx = MakeAttentionContext(model, 0, prefix);
  s.rest_ctx = MakeAttentionContext(model, prefix, s.rest);
  return s;
}

at::Tensor EmbedShared(const Model& model, const at::Tensor& tokens, const SharedPrefix& s) {
  return EmbedTokens(model, at::cat({tokens.narrow(0, 0, 1).narrow(1, 0, s.prefix).reshape({-1}),
                                     tokens.narrow(1, s.prefix, s.rest).reshape({-1})}));
}

at::Tensor UnshareRows(const at::Tensor& rows, const SharedPrefix& s) {
  const int64_t hidden = rows.size(-1);
  return at::cat({rows.narrow(0, 0, s.prefix).unsqueeze(0).expand({s.batch, s.prefix, hidden}),
                  rows.narrow(0, s.prefix, s.batch * s.rest).view({s.batch, s.rest, hidden})},
                 1);
}

int64_t CommonPrefixLength(const at::Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  if (B < 2 || T < 2) return 0;
  // Columns where every row has row 0's token, up to the first that does not.
  const at::Tensor same = tokens.eq(tokens.narrow(0, 0, 1)).all(0).to(at::kLong);  // [T]
  const int64_t p = std::min(same.cumprod(0).sum().item<int64_t>(), T - 1);  // one position of each row's own
  return p >= kMinSharedPrefix ? p : 0;
}

at::Tensor HiddenStates(const Model& model, const LoraWeights* lora, const at::Tensor& tokens, int64_t n_layers) {
  at::NoGradGuard ng;
  const size_t layers = n_layers > 0 ? std::min(size_t(n_layers), model.layers().size()) : model.layers().size();
  const int64_t P = lora && lora->training && lora->dropout > 0 ? 0 : CommonPrefixLength(tokens);
  if (P == 0) {
    const AttentionContext ctx = MakeAttentionContext(model, 0, tokens.size(1));
    at::Tensor x = EmbedTokens(model, tokens);
    for (size_t l = 0; l < layers; ++l) x = LayerForward(model, lora, l, x, ctx, nullptr);
    return x;
  }
  const SharedPrefix s = MakeSharedPrefix(model, tokens.size(0), P, tokens.size(1));
  at::Tensor x = EmbedShared(model, tokens, s);
  for (size_t l = 0; l < layers; ++l) x = LayerForwardShared(model, lora, l, x, s);
  return UnshareRows(x, s);
}

at::Tensor LayerForwardShared(const Model& model, const LoraWeights* lora, size_t li, const at::Tensor& rows,
                              const SharedPrefix& s, LayerKeep* keep) {
  LayerOut out = LayerParts(model, lora, li, rows, s.rest_ctx, nullptr, /*down_value=*/true, keep, nullptr, false, &s);
  return out.mid + out.down;
}

at::Tensor LayerBackwardShared(const Model& model, const LoraWeights* lora, size_t li, const at::Tensor& rows,
                               const SharedPrefix& s, const at::Tensor& grad, bool input_grad, const LayerKeep* kept) {
  return LayerBackwardOf(rows, grad, input_grad, [&](const at::Tensor& xg) {
    return LayerParts(model, lora, li, xg, s.rest_ctx, nullptr, /*down_value=*/false, nullptr, kept, true, &s);
  });
}

at::Tensor HeadNorm(const Model& model, const at::Tensor& x) {
  return RmsNorm(x, model.output_norm(), model.config().rms_eps);
}

at::Tensor HeadForward(const Model& model, const at::Tensor& x) { return model.output().Mul(HeadNorm(model, x)); }

at::Tensor Forward(const Model& model, const LoraWeights* lora, const at::Tensor& tokens, KvCache* cache,
                   const ForwardOptions& options) {
  const int64_t T = tokens.size(1);
  const int64_t past = cache ? cache->length : 0;
  AttentionContext ctx = MakeAttentionContext(model, past, T);
  at::Tensor x = EmbedTokens(model, tokens);
  for (size_t li = 0; li < model.layers().size(); ++li) x = LayerForward(model, lora, li, x, ctx, cache);
  if (cache) cache->length = past + T;
  if (options.last_logits_only) x = x.narrow(1, T - 1, 1);
  return HeadForward(model, x);
}

namespace {

int BlasThreads() {
  using GetThreads = int (*)();
  auto fn = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn ? fn() : 0;
}

void SetBlasThreads(int n) {
  // OpenBLAS is reached through libblas.so.3; its thread setter is optional.
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
}

}  // namespace

ThreadsScope::ThreadsScope(int torch_threads, int blas_threads) : torch_(at::get_num_threads()), blas_(BlasThreads()) {
  if (torch_threads > 0) at::set_num_threads(torch_threads);
  if (blas_threads > 0 && blas_ > 0) SetBlasThreads(blas_threads);
}

ThreadsScope::~ThreadsScope() {
  at::set_num_threads(torch_);
  if (blas_ > 0) SetBlasThreads(blas_);
}

LibTorchProductsThreads::LibTorchProductsThreads()
    : scope_(std::max({at::get_num_threads(), BlasThreads(), 1}), /*blas_threads=*/1) {}

void ConfigureThreads(int torch_threads, int blas_threads) {
  if (torch_threads > 0) at::set_num_threads(torch_threads);
  // The decode kernels' pool follows the BLAS thread count.
  if (blas_threads > 0) kernels::ThreadPool::Default().set_active(blas_threads);
  if (blas_threads > 0) SetBlasThreads(blas_threads);
}

}  // namespace attune::runtime

namespace attune::runtime {
namespace {

bool DenseFloat(const at::Tensor& t) { return t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 2; }

}  // namespace

bool PlainViews(const Model& model, const LoraWeights* lora, KvCache* cache, PlainWeights* w, PlainLora* pl, PlainCache* pc) {
  for (const auto* kv : {&cache->k, &cache->v}) {
    for (const auto& t : *kv) {
      if (!t.is_contiguous() || t.scalar_type() != at::kFloat) return false;
    }
  }
  if (lora) {
    if (lora->training) return false;
    pl->scale = lora->scale;
    pl->layers.assign(lora->layers.size(), {});
    for (size_t l = 0; l < lora->layers.size(); ++l) {
      for (int t = 0; t < kNumLoraTargets; ++t) {
        const auto& p = lora->layers[l][size_t(t)];
        if (!p.a.defined()) continue;
        if (!DenseFloat(p.a) || !DenseFloat(p.b)) return false;
        pl->layers[l][size_t(t)] = {p.a.data_ptr<float>(), p.b.data_ptr<float>(), p.a.size(0)};
      }
    }
  }
  w->config = model.config();
  w->embed = &model.embedding().blocks();
  w->output = &model.output().blocks();
  w->out_norm = model.output_norm().data_ptr<float>();
  w->rope_cos = model.rope_cos().data_ptr<float>();
  w->rope_sin = model.rope_sin().data_ptr<float>();
  w->layers.resize(model.layers().size());
  for (size_t i = 0; i < model.layers().size(); ++i) {
    const LayerWeights& L = model.layers()[i];
    PlainLayer& P = w->layers[i];
    P.attn_norm = L.attn_norm.data_ptr<float>();
    P.ffn_norm = L.ffn_norm.data_ptr<float>();
    for (int t = 0; t < kNumLoraTargets; ++t) P.proj[size_t(t)] = &L.proj[size_t(t)].blocks();
    if (L.q_bias.defined()) {
      P.q_bias = L.q_bias.data_ptr<float>();
      P.k_bias = L.k_bias.data_ptr<float>();
      P.v_bias = L.v_bias.data_ptr<float>();
    }
  }
  pc->k.clear();
  pc->v.clear();
  for (size_t i = 0; i < cache->k.size(); ++i) {
    pc->k.push_back(cache->k[i].data_ptr<float>());
    pc->v.push_back(cache->v[i].data_ptr<float>());
  }
  pc->length = cache->length;
  pc->capacity = cache->capacity;
  return true;
}

}  // namespace attune::runtime
