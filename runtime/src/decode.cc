#include "runtime/src/decode.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "runtime/src/kernels/quant_dot.h"
#include "runtime/src/kernels/thread_pool.h"

namespace attune::runtime {
namespace {

void RmsNorm(const float* x, const float* w, int64_t n, double eps, float* out) {
  float ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / float(n) + float(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

// Rotate-half RoPE on `heads` vectors of `dim` (transformers' apply_rotary_pos_emb).
void Rope(float* v, int64_t heads, int64_t dim, const float* cos, const float* sin) {
  const int64_t half = dim / 2;
  for (int64_t h = 0; h < heads; ++h, v += dim) {
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = v[i], x2 = v[i + half];
      v[i] = x1 * cos[i] - x2 * sin[i];
      v[i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

bool DenseFloat(const at::Tensor& t) { return t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 2; }

// y[out] += scale * B (A x): the unmerged LoRA term of one projection, with
// the fp32 row kernels (A and B are dense fp32 matrices).
void AddLora(const LoraWeights::Pair& p, double scale, const float* x, float* y, DecodeScratch* s) {
  const int64_t r = p.a.size(0), in = p.a.size(1), out = p.b.size(0);
  s->lora_tmp.resize(size_t(r));
  s->lora_out.resize(size_t(out));
  const auto* a = reinterpret_cast<const uint8_t*>(p.a.data_ptr<float>());
  const auto* b = reinterpret_cast<const uint8_t*>(p.b.data_ptr<float>());
  kernels::DotRows(GgmlType::kF32, a, size_t(in) * sizeof(float), r, x, in, s->lora_tmp.data());
  for (auto& v : s->lora_tmp) v *= float(scale);
  kernels::DotRows(GgmlType::kF32, b, size_t(r) * sizeof(float), out, s->lora_tmp.data(), r, s->lora_out.data());
  for (int64_t o = 0; o < out; ++o) y[o] += s->lora_out[size_t(o)];
}

// y_i = W_i x (+ the LoRA term) for the projections `targets` of one layer
// that read the same input, the base products in one pool job.
void Project(const Model& m, const LoraWeights* lora, size_t layer, std::initializer_list<int> targets, const float* x,
             std::initializer_list<float*> ys, DecodeScratch* s) {
  const LinearWeight* ws[4];
  float* out[4];
  int n = 0;
  auto y = ys.begin();
  for (int t : targets) {
    ws[n] = &m.layers()[layer].proj[size_t(t)];
    out[n++] = *y++;
  }
  LinearWeight::MulVecs(ws, out, n, x);
  if (lora && layer < lora->layers.size()) {
    int i = 0;
    for (int t : targets) {
      const auto& p = lora->layers[layer][size_t(t)];
      if (p.a.defined()) AddLora(p, lora->scale, x, out[i], s);
      ++i;
    }
  }
}

// Attention of one query head over positions [0, len) of its kv head. The
// scores are the fp32 row kernel's dot products (SIMD, dispatched at run
// time); the weighted sum of values is a plain loop the compiler vectorizes
// (this file is built with -O3).
void AttendHead(const float* q, const float* kc, const float* vc, int64_t len, int64_t dim, float* scores,
                float* __restrict out) {
  const float scale = 1.0f / std::sqrt(float(dim));
  kernels::DotRows(GgmlType::kF32, reinterpret_cast<const uint8_t*>(kc), size_t(dim) * sizeof(float), len, q, dim, scores);
  float mx = -INFINITY;
  for (int64_t s = 0; s < len; ++s) {
    scores[s] *= scale;
    mx = std::max(mx, scores[s]);
  }
  float sum = 0;
  for (int64_t s = 0; s < len; ++s) {
    scores[s] = std::exp(scores[s] - mx);
    sum += scores[s];
  }
  const float inv = 1.0f / sum;
  std::fill(out, out + dim, 0.0f);
  for (int64_t s = 0; s < len; ++s) {
    const float p = scores[s] * inv;
    const float* __restrict v = vc + s * dim;
    for (int64_t i = 0; i < dim; ++i) out[i] += p * v[i];
  }
}

}  // namespace

bool LeanDecodeSupported(const Model& model, const LoraWeights* lora, const KvCache& cache) {
  if (cache.k.empty() || !cache.k[0].is_contiguous() || cache.k[0].scalar_type() != at::kFloat) return false;
  if (!lora) return true;
  if (lora->training) return false;
  for (const auto& layer : lora->layers) {
    for (const auto& p : layer) {
      if (p.a.defined() && (!DenseFloat(p.a) || !DenseFloat(p.b))) return false;
    }
  }
  return true;
}

void DecodeStep(const Model& m, const LoraWeights* lora, int32_t token, KvCache* cache, float* logits, DecodeScratch* s) {
  const ModelConfig& c = m.config();
  const int64_t hidden = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim, G = H / Hkv;
  const int64_t pos = cache->length, cap = cache->capacity, len = pos + 1;
  s->x.resize(size_t(hidden));
  s->h.resize(size_t(std::max(hidden, H * D)));
  s->q.resize(size_t(H * D));
  s->k.resize(size_t(Hkv * D));
  s->v.resize(size_t(Hkv * D));
  s->att.resize(size_t(H * D));
  s->gate.resize(size_t(c.intermediate));
  s->up.resize(size_t(c.intermediate));
  s->scores.resize(size_t(H * len));
  m.embedding().Row(token, s->x.data());
  const float* cos = m.rope_cos().data_ptr<float>() + pos * (D / 2);
  const float* sin = m.rope_sin().data_ptr<float>() + pos * (D / 2);
  kernels::ThreadPool& pool = kernels::ThreadPool::Default();
  for (size_t li = 0; li < m.layers().size(); ++li) {
    const LayerWeights& L = m.layers()[li];
    RmsNorm(s->x.data(), L.attn_norm.data_ptr<float>(), hidden, c.rms_eps, s->h.data());
    Project(m, lora, li, {kQ, kK, kV}, s->h.data(), {s->q.data(), s->k.data(), s->v.data()}, s);
    if (L.q_bias.defined()) {
      const float *qb = L.q_bias.data_ptr<float>(), *kb = L.k_bias.data_ptr<float>(), *vb = L.v_bias.data_ptr<float>();
      for (int64_t i = 0; i < H * D; ++i) s->q[size_t(i)] += qb[i];
      for (int64_t i = 0; i < Hkv * D; ++i) {
        s->k[size_t(i)] += kb[i];
        s->v[size_t(i)] += vb[i];
      }
    }
    Rope(s->q.data(), H, D, cos, sin);
    Rope(s->k.data(), Hkv, D, cos, sin);
    float* kc = cache->k[li].data_ptr<float>();
    float* vc = cache->v[li].data_ptr<float>();
    for (int64_t g = 0; g < Hkv; ++g) {
      std::copy_n(s->k.data() + g * D, D, kc + (g * cap + pos) * D);
      std::copy_n(s->v.data() + g * D, D, vc + (g * cap + pos) * D);
    }
    auto head = [&](int64_t h) {
      const int64_t g = h / G;
      AttendHead(s->q.data() + h * D, kc + g * cap * D, vc + g * cap * D, len, D, s->scores.data() + h * len, s->att.data() + h * D);
    };
    // Long contexts split the heads across the pool; short ones are cheaper inline.
    if (len * D * H >= (int64_t(1) << 16)) {
      pool.Run(H, head);
    } else {
      for (int64_t h = 0; h < H; ++h) head(h);
    }
    Project(m, lora, li, {kO}, s->att.data(), {s->h.data()}, s);
    for (int64_t i = 0; i < hidden; ++i) s->x[size_t(i)] += s->h[size_t(i)];

    RmsNorm(s->x.data(), L.ffn_norm.data_ptr<float>(), hidden, c.rms_eps, s->h.data());
    Project(m, lora, li, {kGate, kUp}, s->h.data(), {s->gate.data(), s->up.data()}, s);
    for (int64_t i = 0; i < c.intermediate; ++i) {
      const float g = s->gate[size_t(i)];
      s->gate[size_t(i)] = g / (1.0f + std::exp(-g)) * s->up[size_t(i)];
    }
    Project(m, lora, li, {kDown}, s->gate.data(), {s->h.data()}, s);
    for (int64_t i = 0; i < hidden; ++i) s->x[size_t(i)] += s->h[size_t(i)];
  }
  cache->length = len;
  RmsNorm(s->x.data(), m.output_norm().data_ptr<float>(), hidden, c.rms_eps, s->h.data());
  m.output().MulVec(s->h.data(), logits);
}

}  // namespace attune::runtime
