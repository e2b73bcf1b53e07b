#include "attune/runtime/quant_matrix.h"

#include <algorithm>
#include <vector>

#include "runtime/src/kernels/quant_dot.h"
#include "runtime/src/kernels/thread_pool.h"

namespace attune::runtime {

using kernels::ThreadPool;

namespace {

// Weight rows per pool chunk of a one-row product: enough chunks that a
// thread which loses its core costs little.
int64_t VecChunk(const QuantMatrix& w, const ThreadPool& pool) {
  return std::max<int64_t>(8, w.rows / (int64_t(pool.threads()) * 8));
}

}  // namespace

void MulVec(const QuantMatrix& w, const float* x, float* y) {
  const QuantMatrix* ws[1] = {&w};
  float* ys[1] = {y};
  MulVecs(ws, ys, 1, x);
}

void MulVecs(const QuantMatrix* const* ws, float* const* ys, int n, const float* x) {
  constexpr int kMax = 4;
  if (n > kMax) {
    for (int i = 0; i < n; ++i) MulVec(*ws[i], x, ys[i]);
    return;
  }
  // One quantized activation per weight (shared when the types agree).
  thread_local std::vector<uint8_t> xq[kMax];
  const void* xqp[kMax] = {};
  ThreadPool& pool = ThreadPool::Default();
  int64_t first_chunk[kMax + 1] = {}, chunk[kMax] = {};
  for (int i = 0; i < n; ++i) {
    const QuantMatrix& q = *ws[i];
    for (int j = 0; j < i && !xqp[i]; ++j) {
      if (ws[j]->type == q.type && ws[j]->cols == q.cols) xqp[i] = xqp[j];
    }
    if (!xqp[i]) {
      xq[i].resize(kernels::ActivationBytes(q.type, q.cols));
      kernels::QuantizeActivation(q.type, x, xq[i].data(), q.cols);
      xqp[i] = xq[i].data();
    }
    chunk[i] = VecChunk(q, pool);
    first_chunk[i + 1] = first_chunk[i] + (q.rows + chunk[i] - 1) / chunk[i];
  }
  pool.Run(first_chunk[n], [&](int64_t c) {
    int i = 0;
    while (c >= first_chunk[i + 1]) ++i;
    const QuantMatrix& q = *ws[i];
    const int64_t r0 = (c - first_chunk[i]) * chunk[i], rows = std::min(chunk[i], q.rows - r0);
    kernels::DotRows(q.type, q.data + size_t(r0) * q.row_bytes, q.row_bytes, rows, xqp[i], q.cols, ys[i] + r0);
  });
}

void MulRows(const QuantMatrix& w, const float* x, int64_t m, float* y) {
  if (m == 1) return MulVec(w, x, y);
  const size_t xb = kernels::ActivationBytes(w.type, w.cols);
  thread_local std::vector<uint8_t> xq;
  xq.resize(xb * size_t(m));
  // (a lambda body naming xq would name the worker's own thread_local)
  uint8_t* xqp = xq.data();
  ThreadPool& pool = ThreadPool::Default();
  pool.Run(m, [&](int64_t i) { kernels::QuantizeActivation(w.type, x + i * w.cols, xqp + xb * size_t(i), w.cols); });
  // Chunks of weight rows small enough to stay in L1/L2 while every
  // activation row passes over them, and enough of them that a thread which
  // loses its core costs little.
  const int64_t chunk = std::clamp<int64_t>(w.rows / (int64_t(pool.threads()) * 8), 4, 64);
  pool.Run((w.rows + chunk - 1) / chunk, [&](int64_t c) {
    const int64_t r0 = c * chunk, n = std::min(chunk, w.rows - r0);
    kernels::DotRowsMulti(w.type, w.data + size_t(r0) * w.row_bytes, w.row_bytes, n, xqp, xb, m, w.cols, y + r0, w.rows);
  });
}

void RowOf(const QuantMatrix& w, int64_t id, float* dst) {
  kernels::DequantizeRows(w.type, w.data + size_t(id) * w.row_bytes, w.row_bytes, 1, w.cols, dst);
}

}  // namespace attune::runtime
