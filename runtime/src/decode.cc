#include "runtime/src/decode.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "runtime/src/kernels/activations.h"
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

// y[out] += scale * B (A x): the unmerged LoRA term of one projection for
// one row, with the fp32 row kernels (A and B are dense fp32 matrices).
void AddLora(const PlainLora::Pair& p, const QuantMatrix& w, double scale, const float* x, float* y, DecodeScratch* s) {
  const int64_t r = p.rank, in = w.cols, out = w.rows;
  s->lora_tmp.resize(size_t(r));
  s->lora_out.resize(size_t(out));
  const auto* a = reinterpret_cast<const uint8_t*>(p.a);
  const auto* b = reinterpret_cast<const uint8_t*>(p.b);
  kernels::DotRows(GgmlType::kF32, a, size_t(in) * sizeof(float), r, x, in, s->lora_tmp.data());
  for (auto& v : s->lora_tmp) v *= float(scale);
  kernels::DotRows(GgmlType::kF32, b, size_t(r) * sizeof(float), out, s->lora_tmp.data(), r, s->lora_out.data());
  for (int64_t o = 0; o < out; ++o) y[o] += s->lora_out[size_t(o)];
}

// y_i = W_i x (+ the LoRA term) for the projections `targets` of one layer
// that read the same n input rows. One row: the base products in one pool
// job; several: a many-row product per weight.
void Project(const PlainWeights& m, const PlainLora* lora, size_t layer, std::initializer_list<int> targets, const float* x,
             int64_t n, std::initializer_list<float*> ys, DecodeScratch* s) {
  const QuantMatrix* ws[4];
  float* out[4];
  int k = 0;
  auto y = ys.begin();
  for (int t : targets) {
    ws[k] = m.layers[layer].proj[size_t(t)];
    out[k++] = *y++;
  }
  if (n == 1) {
    MulVecs(ws, out, k, x);
  } else {
    for (int i = 0; i < k; ++i) MulRows(*ws[i], x, n, out[i]);
  }
  if (!lora || layer >= lora->layers.size()) return;
  int i = 0;
  for (int t : targets) {
    const auto& p = lora->layers[layer][size_t(t)];
    if (p.a) {
      for (int64_t row = 0; row < n; ++row) AddLora(p, *ws[i], lora->scale, x + row * ws[i]->cols, out[i] + row * ws[i]->rows, s);
    }
    ++i;
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

namespace {

// Long prompts go through in chunks of this many rows, so that the buffers
// stay a few MB (as llama.cpp's batches).
constexpr int64_t kChunk = 256;

// Rows [0, n) of one chunk through the first `n_layers` layers; the hidden
// states stay in s->x for the caller.
void LayersForward(const PlainWeights& m, const PlainLora* lora, const int32_t* tokens, int64_t n, PlainCache* cache,
                   DecodeScratch* s, size_t n_layers) {
  const ModelConfig& c = m.config;
  const int64_t hidden = c.hidden, H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim, G = H / Hkv, I = c.intermediate;
  const int64_t pos0 = cache->length, cap = cache->capacity;
  auto size = [n](std::vector<float>& v, int64_t per_row) { v.resize(size_t(n * per_row)); };
  size(s->x, hidden);
  size(s->h, std::max(hidden, H * D));
  size(s->q, H * D);
  size(s->k, Hkv * D);
  size(s->v, Hkv * D);
  size(s->att, H * D);
  size(s->gate, I);
  size(s->up, I);
  for (int64_t i = 0; i < n; ++i) RowOf(*m.embed, tokens[i], s->x.data() + i * hidden);
  kernels::ThreadPool& pool = kernels::ThreadPool::Default();
  for (size_t li = 0; li < n_layers; ++li) {
    const PlainLayer& L = m.layers[li];
    for (int64_t i = 0; i < n; ++i) RmsNorm(s->x.data() + i * hidden, L.attn_norm, hidden, c.rms_eps, s->h.data() + i * hidden);
    Project(m, lora, li, {kQ, kK, kV}, s->h.data(), n, {s->q.data(), s->k.data(), s->v.data()}, s);
    float* kc = cache->k[li];
    float* vc = cache->v[li];
    for (int64_t i = 0; i < n; ++i) {
      float *q = s->q.data() + i * H * D, *k = s->k.data() + i * Hkv * D, *v = s->v.data() + i * Hkv * D;
      if (L.q_bias) {
        for (int64_t j = 0; j < H * D; ++j) q[j] += L.q_bias[j];
        for (int64_t j = 0; j < Hkv * D; ++j) {
          k[j] += L.k_bias[j];
          v[j] += L.v_bias[j];
        }
      }
      const int64_t pos = pos0 + i;
      Rope(q, H, D, m.rope_cos + pos * (D / 2), m.rope_sin + pos * (D / 2));
      Rope(k, Hkv, D, m.rope_cos + pos * (D / 2), m.rope_sin + pos * (D / 2));
      for (int64_t g = 0; g < Hkv; ++g) {
        std::copy_n(k + g * D, D, kc + (g * cap + pos) * D);
        std::copy_n(v + g * D, D, vc + (g * cap + pos) * D);
      }
    }
    // Row i sees positions [0, pos0 + i]: causal attention over the cache.
    auto head = [&](int64_t task) {
      const int64_t i = task / H, h = task % H, g = h / G, len = pos0 + i + 1;
      thread_local std::vector<float> scores;
      scores.resize(size_t(len));
      AttendHead(s->q.data() + (i * H + h) * D, kc + g * cap * D, vc + g * cap * D, len, D, scores.data(),
                 s->att.data() + (i * H + h) * D);
    };
    // Long contexts split the heads across the pool; short ones are cheaper inline.
    if (n * (pos0 + n) * D * H >= (int64_t(1) << 16)) {
      pool.Run(n * H, head);
    } else {
      for (int64_t t = 0; t < n * H; ++t) head(t);
    }
    Project(m, lora, li, {kO}, s->att.data(), n, {s->h.data()}, s);
    for (int64_t i = 0; i < n * hidden; ++i) s->x[size_t(i)] += s->h[size_t(i)];

    for (int64_t i = 0; i < n; ++i) RmsNorm(s->x.data() + i * hidden, L.ffn_norm, hidden, c.rms_eps, s->h.data() + i * hidden);
    Project(m, lora, li, {kGate, kUp}, s->h.data(), n, {s->gate.data(), s->up.data()}, s);
    kernels::SwiGlu(s->gate.data(), s->up.data(), n * I, s->gate.data());
    Project(m, lora, li, {kDown}, s->gate.data(), n, {s->h.data()}, s);
    for (int64_t i = 0; i < n * hidden; ++i) s->x[size_t(i)] += s->h[size_t(i)];
  }
  cache->length = pos0 + n;
}

}  // namespace

void ForwardRows(const PlainWeights& m, const PlainLora* lora, const int32_t* tokens, int64_t n, PlainCache* cache,
                 float* logits, DecodeScratch* s) {
  // Every row's numbers are the same in chunks (kChunk) or not: a many-row
  // product equals the one-row products to the bit.
  int64_t done = 0;
  while (done < n) {
    const int64_t rows = std::min(kChunk, n - done);
    LayersForward(m, lora, tokens + done, rows, cache, s, m.layers.size());
    done += rows;
    if (done == n) {
      const int64_t hidden = m.config.hidden;
      RmsNorm(s->x.data() + (rows - 1) * hidden, m.out_norm, hidden, m.config.rms_eps, s->h.data());
      MulVec(*m.output, s->h.data(), logits);
    }
  }
}

std::vector<float> MeanHiddenState(const PlainWeights& m, const int32_t* tokens, int64_t n, int64_t layers,
                                   PlainCache* cache, DecodeScratch* s) {
  const int64_t hidden = m.config.hidden;
  // One token: its own state; more: the mean over those after the first.
  const int64_t skip = n > 1 ? 1 : 0;
  std::vector<double> sum(size_t(hidden), 0.0);
  for (int64_t done = 0; done < n;) {
    const int64_t rows = std::min(kChunk, n - done);
    LayersForward(m, nullptr, tokens + done, rows, cache, s, size_t(layers));
    for (int64_t i = std::max<int64_t>(0, skip - done); i < rows; ++i) {
      const float* x = s->x.data() + i * hidden;
      for (int64_t j = 0; j < hidden; ++j) sum[size_t(j)] += x[j];
    }
    done += rows;
  }
  std::vector<float> mean(static_cast<size_t>(hidden));
  for (int64_t j = 0; j < hidden; ++j) mean[size_t(j)] = float(sum[size_t(j)] / double(n - skip));
  return mean;
}

}  // namespace attune::runtime
