#include "runtime/src/bf16_gemm.h"

#include <ATen/ATen.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

namespace attune::runtime {
namespace {

using dnnl::memory;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Key {
  Bf16GemmShape s;
  bool operator==(const Key& o) const {
    return std::tie(s.m, s.n, s.k, s.lda, s.ldb, s.ldc, s.b_transposed, s.accumulate, s.alpha) ==
           std::tie(o.s.m, o.s.n, o.s.k, o.s.lda, o.s.ldb, o.s.ldc, o.s.b_transposed, o.s.accumulate, o.s.alpha);
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0;
    for (int64_t v : {k.s.m, k.s.n, k.s.k, k.s.lda, k.s.ldb, k.s.ldc}) h = h * 1000003u ^ size_t(v);
    return (h * 31u + size_t(k.s.b_transposed) * 2u + size_t(k.s.accumulate)) ^ std::hash<float>()(k.s.alpha);
  }
};

struct Prepared {
  bool onednn = false;  // false: oneDNN has no bf16 matmul on this CPU (no AVX-512)
  memory::desc a, b, c;
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
};

Prepared Prepare(const Bf16GemmShape& s) {
  if (s.m <= 0 || s.n <= 0 || s.k <= 0 || s.lda < s.k || s.ldc < s.n || s.ldb < (s.b_transposed ? s.k : s.n)) {
    throw std::invalid_argument("Bf16Gemm: bad shape");
  }
  Prepared p;
  p.a = memory::desc({s.m, s.k}, memory::data_type::bf16, memory::dims{s.lda, 1});
  p.b = s.b_transposed ? memory::desc({s.k, s.n}, memory::data_type::bf16, memory::dims{1, s.ldb})
                       : memory::desc({s.k, s.n}, memory::data_type::bf16, memory::dims{s.ldb, 1});
  p.c = memory::desc({s.m, s.n}, memory::data_type::f32, memory::dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
  if (s.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  try {
    p.pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.a, p.b, p.c), attr, Engine());
    p.primitive = dnnl::matmul(p.pd);
    p.onednn = true;
  } catch (const dnnl::error&) {
    // oneDNN 2.x supports bf16 only from AVX-512 on, even in its reference
    // code; Bf16Gemm then widens the operands for LibTorch's fp32 GEMM.
  }
  return p;
}

// The same product on a CPU where oneDNN refuses bf16: the bf16 operands
// widened exactly to fp32, LibTorch's fp32 GEMM.
void WidenedGemm(const Bf16GemmShape& s, const uint16_t* a, const uint16_t* b, float* c) {
  auto* ua = const_cast<uint16_t*>(a);
  auto* ub = const_cast<uint16_t*>(b);
  const at::Tensor A = at::from_blob(ua, {s.m, s.k}, {s.lda, 1}, at::kBFloat16).to(at::kFloat);
  const at::Tensor B = s.b_transposed ? at::from_blob(ub, {s.n, s.k}, {s.ldb, 1}, at::kBFloat16).to(at::kFloat).t()
                                      : at::from_blob(ub, {s.k, s.n}, {s.ldb, 1}, at::kBFloat16).to(at::kFloat);
  at::Tensor C = at::from_blob(c, {s.m, s.n}, {s.ldc, 1}, at::kFloat);
  C.addmm_(A, B, /*beta=*/s.accumulate ? 1.0 : 0.0, /*alpha=*/s.alpha);
}

// Primitives of this thread, by shape: a training run repeats a few dozen
// shapes, and oneDNN's own cache would still hash the whole descriptor.
const Prepared& Lookup(const Bf16GemmShape& s) {
  thread_local std::unordered_map<Key, Prepared, KeyHash> cache;
  auto it = cache.find(Key{s});
  if (it == cache.end()) {
    if (cache.size() > 256) cache.clear();
    it = cache.emplace(Key{s}, Prepare(s)).first;
  }
  return it->second;
}

}  // namespace

void Bf16Gemm(const Bf16GemmShape& s, const uint16_t* a, const uint16_t* b, float* c) {
  const Prepared& p = Lookup(s);
  if (!p.onednn) return WidenedGemm(s, a, b, c);
  memory am(p.a, Engine(), const_cast<uint16_t*>(a));
  memory bm(p.b, Engine(), const_cast<uint16_t*>(b));
  memory cm(p.c, Engine(), c);
  thread_local dnnl::stream stream(Engine());  // one per thread, not one per product
  p.primitive.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  stream.wait();
}

std::string Bf16GemmImplementation(const Bf16GemmShape& s) {
  const Prepared& p = Lookup(s);
  return p.onednn ? p.pd.impl_info_str() : "widened to fp32 (no oneDNN bf16 on this CPU)";
}

bool Bf16GemmNative() {
  static const bool native = [] {
    Bf16GemmShape s;
    s.m = s.n = s.k = s.lda = s.ldb = s.ldc = 16;
    return Lookup(s).onednn;
  }();
  return native;
}

at::Tensor Bf16Matmul(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kBFloat16 || Bf16GemmNative()) return at::matmul(a, b);
  return at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
}

}  // namespace attune::runtime
