// The quantized GEMV kernels against references, on every instruction set
// this CPU has (the scalar path always):
//  - blocks written by the `gguf` package's quantizers (tests/fixtures/gguf),
//    whose dequantized values the package also recorded: our integer dot
//    products must equal "dequantize with gguf, then fp32 matmul" up to the
//    error of the 8-bit activation, bounded per block below;
//  - random blocks on odd shapes (1 row, 1 block, tails of the chunking);
//  - scalar and SIMD paths agree to float rounding (same integer sums).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "attune/runtime/gguf.h"
#include "runtime/src/kernels/activations.h"
#include "runtime/src/kernels/quant_blocks.h"
#include "runtime/src/kernels/quant_dot.h"
#include "runtime/src/kernels/thread_pool.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime::kernels {
namespace {

using attune::testing::Fixture;

std::vector<Isa> Isas() {
  std::vector<Isa> v = {Isa::kScalar};
  if (IsaSupported(Isa::kAvx2)) v.push_back(Isa::kAvx2);
  if (IsaSupported(Isa::kAvx512)) v.push_back(Isa::kAvx512);
  return v;
}

class IsaGuard {
 public:
  explicit IsaGuard(Isa isa) : saved_(ActiveIsa()) { ForceIsa(isa); }
  ~IsaGuard() { ForceIsa(saved_); }

 private:
  Isa saved_;
};

// The bound of the 8-bit activation. Each element of x moves by at most half
// a step d/2 (d = amax/127) plus the rounding of d to half precision
// (|Δd| <= d·2^-11, times |q| <= 127); the blocks' sums s = d·Σq are rounded
// to half too (|Δs| <= 2^-11·Σ|x|, times the block's offset, at most max|w|):
// |Δy| <= Σ_blocks (d·(1/2 + 127·2^-11)·Σ|w| + 2^-10·max|w|·Σ|x|).
double ActivationBound(const std::vector<float>& w, const std::vector<float>& x, int64_t block) {
  double bound = 0;
  for (size_t b = 0; b < x.size(); b += size_t(block)) {
    double amax = 0, wsum = 0, wmax = 0, xsum = 0;
    for (size_t i = b; i < b + size_t(block); ++i) {
      amax = std::max(amax, std::fabs(double(x[i])));
      wsum += std::fabs(double(w[i]));
      wmax = std::max(wmax, std::fabs(double(w[i])));
      xsum += std::fabs(double(x[i]));
    }
    bound += amax / 127.0 * (0.5 + 127.0 / 2048.0) * wsum + wmax * xsum / 1024.0;
  }
  return bound;
}

double Dot(const float* w, const std::vector<float>& x) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += double(w[i]) * double(x[i]);
  return s;
}

double AbsDot(const float* w, const std::vector<float>& x) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::fabs(double(w[i]) * double(x[i]));
  return s;
}

// y = W x with `isa` against the fp64 product of the dequantized rows.
void ExpectMatchesReference(GgmlType type, const uint8_t* blocks, int64_t rows, int64_t cols,
                            const std::vector<float>& deq, uint32_t seed, const std::string& what) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(static_cast<size_t>(cols));
  for (auto& v : x) v = nd(rng);
  const size_t row_bytes = GgmlRowBytes(type, size_t(cols));
  const bool is_float = BlockElems(type) == 1;
  for (Isa isa : Isas()) {
    IsaGuard g(isa);
    std::vector<uint8_t> xq(ActivationBytes(type, cols));
    QuantizeActivation(type, x.data(), xq.data(), cols);
    std::vector<float> y(static_cast<size_t>(rows));
    DotRows(type, blocks, row_bytes, rows, xq.data(), cols, y.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float* wr = deq.data() + r * cols;
      const double want = Dot(wr, x);
      const double fp = 1e-5 * AbsDot(wr, x) + 1e-6;
      const double tol = is_float ? fp : ActivationBound(std::vector<float>(wr, wr + cols), x, BlockElems(type)) * 1.001 + fp;
      EXPECT_NEAR(y[size_t(r)], want, tol) << what << " row " << r << " isa " << IsaName(isa);
    }
  }
}

TEST(KernelsTest, DotProductsMatchTheGgufPackageDequantizedReference) {
  auto f = GgufFile::Open(Fixture("gguf/quants.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::ifstream in(Fixture("gguf/quants_ref.json"));
  nlohmann::json ref = nlohmann::json::parse(in);
  int checked = 0;
  for (auto& [name, t] : ref["tensors"].items()) {
    const GgufTensorInfo* info = (*f)->FindTensor(name);
    ASSERT_NE(info, nullptr) << name;
    ASSERT_TRUE(Supported(info->type)) << name;
    const int64_t cols = int64_t(info->dims[0]), rows = int64_t(info->n_elements) / cols;
    auto want = t["values"].get<std::vector<float>>();
    ExpectMatchesReference(info->type, info->data, rows, cols, want, 7, name);
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

// Random blocks with finite scales, so every bit pattern of the quants and
// the packed scales is exercised.
std::vector<uint8_t> RandomBlocks(GgmlType type, int64_t rows, int64_t cols, std::mt19937* rng) {
  const size_t row_bytes = GgmlRowBytes(type, size_t(cols));
  std::vector<uint8_t> b(row_bytes * size_t(rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& v : b) v = uint8_t(byte(*rng));
  const auto traits = *GetGgmlTypeTraits(uint32_t(type));
  // Halves in [2^-10, 2^-6) for the block scales (exponent 5..8, random mantissa).
  auto half = [&] { return uint16_t(((5 + byte(*rng) % 4) << 10) | (byte(*rng) << 2)); };
  auto put = [&](uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); };
  for (size_t off = 0; off < b.size(); off += traits.block_bytes) {
    uint8_t* p = b.data() + off;
    switch (type) {
      case GgmlType::kQ4_0: case GgmlType::kQ5_0: case GgmlType::kQ8_0: put(p, half()); break;
      case GgmlType::kQ4_1: case GgmlType::kQ5_1: case GgmlType::kQ4_K: case GgmlType::kQ5_K:
        put(p, half());
        put(p + 2, half());
        break;
      case GgmlType::kQ6_K: put(p + 208, half()); break;
      case GgmlType::kF16: put(p, uint16_t(half() | ((byte(*rng) & 1) << 15))); break;
      case GgmlType::kBF16: {
        float v = std::normal_distribution<float>(0, 1)(*rng);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        put(p, uint16_t(bits >> 16));
        break;
      }
      case GgmlType::kF32: {
        float v = std::normal_distribution<float>(0, 1)(*rng);
        std::memcpy(p, &v, 4);
        break;
      }
    }
  }
  return b;
}

const GgmlType kAllTypes[] = {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ8_0,
                              GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kF16, GgmlType::kBF16,
                              GgmlType::kF32};

TEST(KernelsTest, OddShapesMatchTheDequantizedReference) {
  std::mt19937 rng(11);
  for (GgmlType type : kAllTypes) {
    const int64_t blk = BlockElems(type) == 1 ? 8 : BlockElems(type);
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t nblocks : {1, 3, 5}) {
        const int64_t cols = blk * nblocks + (BlockElems(type) == 1 ? 3 : 0);  // float types: a tail too
        auto blocks = RandomBlocks(type, rows, cols, &rng);
        std::vector<float> deq(static_cast<size_t>(rows * cols));
        DequantizeRows(type, blocks.data(), GgmlRowBytes(type, size_t(cols)), rows, cols, deq.data());
        std::vector<float> ref(deq.size());
        for (int64_t r = 0; r < rows; ++r) {
          DequantizeRow(type, blocks.data() + size_t(r) * GgmlRowBytes(type, size_t(cols)), ref.data() + r * cols, size_t(cols));
        }
        ASSERT_EQ(deq, ref) << GetGgmlTypeTraits(uint32_t(type))->name;
        ExpectMatchesReference(type, blocks.data(), rows, cols, deq, uint32_t(rows * 100 + cols),
                               std::string(GetGgmlTypeTraits(uint32_t(type))->name) + " " + std::to_string(rows) + "x" +
                                   std::to_string(cols));
      }
    }
  }
}

TEST(KernelsTest, ScalarAndSimdAgree) {
  std::mt19937 rng(5);
  for (GgmlType type : kAllTypes) {
    const int64_t cols = BlockElems(type) == 1 ? 72 : BlockElems(type) * 4, rows = 9;
    auto blocks = RandomBlocks(type, rows, cols, &rng);
    std::vector<float> x(static_cast<size_t>(cols));
    for (auto& v : x) v = std::normal_distribution<float>(0, 2)(rng);
    std::vector<uint8_t> q_ref;
    std::vector<float> y_ref, d_ref;
    for (Isa isa : Isas()) {
      IsaGuard g(isa);
      std::vector<uint8_t> xq(ActivationBytes(type, cols));
      QuantizeActivation(type, x.data(), xq.data(), cols);
      std::vector<float> y(static_cast<size_t>(rows)), d(size_t(rows * cols));
      DotRows(type, blocks.data(), GgmlRowBytes(type, size_t(cols)), rows, xq.data(), cols, y.data());
      DequantizeRows(type, blocks.data(), GgmlRowBytes(type, size_t(cols)), rows, cols, d.data());
      if (isa == Isa::kScalar) {
        q_ref = xq;
        y_ref = y;
        d_ref = d;
        continue;
      }
      const char* name = GetGgmlTypeTraits(uint32_t(type))->name.data();
      EXPECT_EQ(xq, q_ref) << name << " activation bytes differ on " << IsaName(isa);
      EXPECT_EQ(d, d_ref) << name << " dequantization differs on " << IsaName(isa);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_NEAR(y[size_t(r)], y_ref[size_t(r)], 1e-5 * (std::fabs(y_ref[size_t(r)]) + 1)) << name << " " << IsaName(isa);
      }
    }
  }
}

// Calls f(type, name, rows, cols, row_bytes, blocks) for every type over odd
// row and block counts (float types with a tail); legacy blocks' scales are
// not finite in part: the first block's d NaN, the last one's infinite.
template <typename F>
void ForEachDequantizationCase(uint32_t seed, F&& f) {
  std::mt19937 rng(seed);
  for (GgmlType type : kAllTypes) {
    const char* name = GetGgmlTypeTraits(uint32_t(type))->name.data();
    const int64_t blk = BlockElems(type) == 1 ? 8 : BlockElems(type);
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t nblocks : {1, 3, 5}) {
        const int64_t cols = blk * nblocks + (BlockElems(type) == 1 ? 3 : 0);
        const size_t row_bytes = GgmlRowBytes(type, size_t(cols));
        auto blocks = RandomBlocks(type, rows, cols, &rng);
        if (BlockElems(type) == kQ8Block && nblocks > 1) {
          const uint16_t nan = 0x7E00, inf = 0xFC00;
          std::memcpy(blocks.data(), &nan, 2);
          std::memcpy(blocks.data() + row_bytes - GetGgmlTypeTraits(uint32_t(type))->block_bytes, &inf, 2);
        }
        f(type, name, rows, cols, row_bytes, blocks);
      }
    }
  }
}

// `dequantize(out)` writes `want` to the bit on every instruction set, and
// nothing past it (a `sentinel` one past the end stays untouched).
template <class T, class Fn>
void ExpectOnEveryIsa(const std::vector<T>& want, T sentinel, const char* name, int64_t rows, int64_t cols,
                      const Fn& dequantize) {
  for (Isa isa : Isas()) {
    IsaGuard g(isa);
    std::vector<T> got(want.size() + 1, sentinel);
    dequantize(got.data());
    EXPECT_EQ(std::memcmp(&got.back(), &sentinel, sizeof(T)), 0) << name << " wrote past its rows on " << IsaName(isa);
    got.pop_back();
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(T)), 0)
        << name << " " << rows << "x" << cols << " on " << IsaName(isa);
  }
}

// The fp32 dequantization (the fp32 training products' weight tiles, the
// runtime's fp32 weights) gives the scalar path's floats to the bit on every
// instruction set, nothing written past the rows.
TEST(KernelsTest, FloatDequantizationIsTheScalarOneOnEveryIsa) {
  ForEachDequantizationCase(37, [](GgmlType type, const char* name, int64_t rows, int64_t cols, size_t row_bytes,
                                   const std::vector<uint8_t>& blocks) {
    std::vector<float> want(size_t(rows * cols));
    {
      IsaGuard g(Isa::kScalar);
      DequantizeRows(type, blocks.data(), row_bytes, rows, cols, want.data());
    }
    ExpectOnEveryIsa(want, 12345.f, name, rows, cols, [&](float* out) {
      DequantizeRows(type, blocks.data(), row_bytes, rows, cols, out);
    });
  });
}

// The bf16 dequantization (the bf16 training products' weight tiles) is the
// float one rounded, to the bit, for every type on every instruction set. How
// it rounds is checked against LibTorch's conversion in bf16_gemm_test.
TEST(KernelsTest, Bf16DequantizationIsTheFloatOneRounded) {
  ForEachDequantizationCase(31, [](GgmlType type, const char* name, int64_t rows, int64_t cols, size_t row_bytes,
                                   const std::vector<uint8_t>& blocks) {
    std::vector<float> f32(size_t(rows * cols));
    DequantizeRows(type, blocks.data(), row_bytes, rows, cols, f32.data());
    std::vector<uint16_t> want(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) want[i] = F32ToBf16(f32[i]);
    ExpectOnEveryIsa(want, uint16_t(0xABCD), name, rows, cols, [&](uint16_t* out) {
      DequantizeRowsBf16(type, blocks.data(), row_bytes, rows, cols, out);
    });
  });
}

// The many-row kernel (prefill, evaluation) writes, for every activation
// row, exactly what the one-row kernel writes: every type, every
// instruction set, 1..9 activation rows (the 4-row groups and their tails),
// odd row and block counts, a strided output.
TEST(KernelsTest, ManyRowProductsEqualOneRowProductsToTheBit) {
  std::mt19937 rng(23);
  for (GgmlType type : kAllTypes) {
    const int64_t blk = BlockElems(type) == 1 ? 8 : BlockElems(type);
    for (int64_t rows : {1, 5}) {
      for (int64_t nblocks : {1, 3}) {
        const int64_t cols = blk * nblocks, y_stride = rows + 2;
        const size_t row_bytes = GgmlRowBytes(type, size_t(cols)), xb = ActivationBytes(type, cols);
        auto blocks = RandomBlocks(type, rows, cols, &rng);
        for (int64_t m : {1, 4, 9}) {
          std::vector<float> x(size_t(m * cols));
          for (auto& v : x) v = std::normal_distribution<float>(0, 2)(rng);
          for (Isa isa : Isas()) {
            IsaGuard g(isa);
            std::vector<uint8_t> xq(xb * size_t(m));
            for (int64_t i = 0; i < m; ++i) QuantizeActivation(type, x.data() + i * cols, xq.data() + xb * size_t(i), cols);
            std::vector<float> many(size_t(m * y_stride), -7.0f);
            DotRowsMulti(type, blocks.data(), row_bytes, rows, xq.data(), xb, m, cols, many.data(), y_stride);
            const char* name = GetGgmlTypeTraits(uint32_t(type))->name.data();
            for (int64_t i = 0; i < m; ++i) {
              std::vector<float> one(static_cast<size_t>(rows));
              DotRows(type, blocks.data(), row_bytes, rows, xq.data() + xb * size_t(i), cols, one.data());
              for (int64_t r = 0; r < rows; ++r) {
                EXPECT_EQ(many[size_t(i * y_stride + r)], one[size_t(r)]) << name << " " << IsaName(isa) << " m " << m << " row " << r;
              }
              for (int64_t r = rows; r < y_stride; ++r) EXPECT_EQ(many[size_t(i * y_stride + r)], -7.0f) << "wrote past its rows";
            }
          }
        }
      }
    }
  }
}

TEST(KernelsTest, ZeroActivationGivesZero) {
  std::mt19937 rng(3);
  for (GgmlType type : kAllTypes) {
    const int64_t cols = BlockElems(type) == 1 ? 16 : BlockElems(type);
    auto blocks = RandomBlocks(type, 2, cols, &rng);
    std::vector<float> x(static_cast<size_t>(cols), 0.0f), y(2, 1.0f);
    for (Isa isa : Isas()) {
      IsaGuard g(isa);
      std::vector<uint8_t> xq(ActivationBytes(type, cols));
      QuantizeActivation(type, x.data(), xq.data(), cols);
      DotRows(type, blocks.data(), GgmlRowBytes(type, size_t(cols)), 2, xq.data(), cols, y.data());
      EXPECT_EQ(y[0], 0.0f);
      EXPECT_EQ(y[1], 0.0f);
    }
  }
}

// SwiGLU and its gradient against double precision, on every instruction
// set of this CPU and the scalar path, which must give the same bits (no
// fused multiply-add anywhere). The exponential is within 2 ulp, so a value
// is within 8 ulp of silu(g) u (2^-20 relative); dg cancels near g = -1.28
// (s (1 + g (1 - s)) = 0), so its bound is relative to |dy u| (1 + |g|).
// Beyond |g| = 87.3, silu(g) is g (g > 0) or 0 (g < -88.4); in between
// (g < 0) it is below 1e-36 |g|, which the absolute term allows.
TEST(ActivationsTest, SwiGluMatchesDoublePrecisionWithTheSameBitsOnEveryIsa) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> wide(-30.0f, 30.0f), unit(-2.0f, 2.0f);
  const int64_t n = 4099;  // a tail for every vector width
  std::vector<float> g(static_cast<size_t>(n)), u(g.size()), dy(g.size());
  for (int64_t i = 0; i < n; ++i) {
    g[size_t(i)] = i % 3 == 0 ? wide(rng) : unit(rng) * 4.0f;
    u[size_t(i)] = unit(rng);
    dy[size_t(i)] = unit(rng);
  }
  const std::vector<float> edges = {0.0f, -0.0f, 1e-30f, -1e-30f, -1.2785f, 87.0f, -87.0f, -88.0f, 100.0f, -100.0f, 1e30f,
                                    -1e30f};
  for (size_t i = 0; i < edges.size(); ++i) g[i] = edges[i];
  std::vector<float> want_y, want_dg, want_du;
  for (Isa isa : Isas()) {
    SCOPED_TRACE(IsaName(isa));
    IsaGuard guard(isa);
    std::vector<float> y(g.size()), dg(g.size()), du(g.size());
    SwiGlu(g.data(), u.data(), n, y.data());
    SwiGluBackward(g.data(), u.data(), dy.data(), n, dg.data(), du.data());
    for (int64_t i = 0; i < n; ++i) {
      const double gi = g[size_t(i)], ui = u[size_t(i)], dyi = dy[size_t(i)];
      const double s = 1.0 / (1.0 + std::exp(-gi));
      const double ry = gi * s * ui, rdg = dyi * ui * s * (1.0 + gi * (1.0 - s)), rdu = dyi * gi * s;
      ASSERT_LE(std::fabs(y[size_t(i)] - ry), std::ldexp(std::fabs(ry), -20) + 1e-30) << "y at g = " << gi;
      ASSERT_LE(std::fabs(du[size_t(i)] - rdu), std::ldexp(std::fabs(rdu), -20) + 1e-30) << "du at g = " << gi;
      ASSERT_LE(std::fabs(dg[size_t(i)] - rdg), std::ldexp(std::fabs(dyi * ui) * (1.0 + std::fabs(gi)), -20) + 1e-30)
          << "dg at g = " << gi;
    }
    if (want_y.empty()) {
      want_y = y, want_dg = dg, want_du = du;
    } else {
      EXPECT_EQ(0, std::memcmp(y.data(), want_y.data(), y.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(dg.data(), want_dg.data(), dg.size() * sizeof(float)));
      EXPECT_EQ(0, std::memcmp(du.data(), want_du.data(), du.size() * sizeof(float)));
    }
    // From bf16 inputs: the same bits as from their widened values.
    std::vector<uint16_t> gb(g.size()), ub(g.size());
    std::vector<float> gw(g.size()), uw(g.size());
    for (size_t i = 0; i < g.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &g[i], 4);
      gb[i] = uint16_t(bits >> 16);
      std::memcpy(&bits, &u[i], 4);
      ub[i] = uint16_t(bits >> 16);
      bits = uint32_t(gb[i]) << 16;
      std::memcpy(&gw[i], &bits, 4);
      bits = uint32_t(ub[i]) << 16;
      std::memcpy(&uw[i], &bits, 4);
    }
    std::vector<float> yb(g.size()), yw(g.size()), dgb(g.size()), dub(g.size()), dgw(g.size()), duw(g.size());
    SwiGluBf16(gb.data(), ub.data(), n, yb.data());
    SwiGlu(gw.data(), uw.data(), n, yw.data());
    SwiGluBf16Backward(gb.data(), ub.data(), dy.data(), n, dgb.data(), dub.data());
    SwiGluBackward(gw.data(), uw.data(), dy.data(), n, dgw.data(), duw.data());
    EXPECT_EQ(0, std::memcmp(yb.data(), yw.data(), yb.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(dgb.data(), dgw.data(), dgb.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(dub.data(), duw.data(), dub.size() * sizeof(float)));
    // NaN stays NaN; in place (y over g) gives the same values; one element.
    const float nan = std::numeric_limits<float>::quiet_NaN(), one = 1.0f;
    float out = 0.0f;
    SwiGlu(&nan, &one, 1, &out);
    EXPECT_TRUE(std::isnan(out));
    std::vector<float> inplace = g;
    SwiGlu(inplace.data(), u.data(), n, inplace.data());
    EXPECT_EQ(0, std::memcmp(inplace.data(), y.data(), y.size() * sizeof(float)));
  }
}

// The output head's row reductions against double precision, on every
// instruction set (the same bits on each): log softmax at a target and its
// derivative (onehot - p), and KL(base || softmax) with its derivative (p -
// p_base), on rows of 1, 17 and 4099 logits (the vocabulary's order of
// spread: logits around ±20). Bounds: the float log-sum-exp of n terms is
// within n·2^-24 relatively; values within 1e-5 (1 + |value|), derivatives
// within 1e-6.
TEST(ActivationsTest, LogitRowReductionsMatchDoublePrecisionWithTheSameBitsOnEveryIsa) {
  std::mt19937 rng(29);
  std::normal_distribution<float> normal(0.0f, 6.0f);
  for (const int64_t n : {int64_t(1), int64_t(17), int64_t(4099)}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    std::vector<float> x(static_cast<size_t>(n)), base(x.size());
    for (float& v : x) v = normal(rng);
    double bmx = -INFINITY, bsum = 0;
    for (float& v : base) bmx = std::max(bmx, double(v = normal(rng)));
    for (float v : base) bsum += std::exp(double(v) - bmx);
    for (float& v : base) v = float(double(v) - bmx - std::log(bsum));  // log-probabilities
    const int64_t target = n / 2;
    double mx = -INFINITY, sum = 0;
    for (float v : x) mx = std::max(mx, double(v));
    for (float v : x) sum += std::exp(double(v) - mx);
    const double lse = mx + std::log(sum);
    double want_kl = 0;
    for (size_t j = 0; j < x.size(); ++j) want_kl += std::exp(double(base[j])) * (double(base[j]) - (double(x[j]) - lse));
    std::vector<float> first_grad, first_kl_grad;
    float first_value = 0, first_kl = 0;
    for (Isa isa : Isas()) {
      SCOPED_TRACE(IsaName(isa));
      IsaGuard guard(isa);
      std::vector<float> g = x, k = x, untouched = x;
      const float value = LogSoftmaxAt(g.data(), n, target, /*grad=*/true);
      EXPECT_NEAR(value, double(x[size_t(target)]) - lse, 1e-5 * (1 + std::fabs(double(x[size_t(target)]) - lse)));
      EXPECT_EQ(LogSoftmaxAt(untouched.data(), n, target, /*grad=*/false), value);
      EXPECT_EQ(untouched, x) << "without grad the row is left as it is";
      const float kl = KlFromBase(k.data(), base.data(), n, /*grad=*/true);
      EXPECT_NEAR(kl, want_kl, 1e-5 * (1 + std::fabs(want_kl)));
      EXPECT_EQ(KlFromBase(untouched.data(), base.data(), n, /*grad=*/false), kl);
      for (size_t j = 0; j < x.size(); ++j) {
        const double p = std::exp(double(x[j]) - lse);
        ASSERT_NEAR(g[j], (int64_t(j) == target ? 1.0 : 0.0) - p, 1e-6) << j;
        ASSERT_NEAR(k[j], p - std::exp(double(base[j])), 1e-6) << j;
      }
      if (first_grad.empty()) {
        first_grad = g, first_kl_grad = k, first_value = value, first_kl = kl;
      } else {
        EXPECT_EQ(value, first_value);
        EXPECT_EQ(kl, first_kl);
        EXPECT_EQ(0, std::memcmp(g.data(), first_grad.data(), g.size() * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(k.data(), first_kl_grad.data(), k.size() * sizeof(float)));
      }
    }
  }
}

// The causal attention softmax of the bf16 training path: one row of bf16
// scores, `valid` keys seen, against double precision; its probabilities
// rounded to bf16 as F32ToBf16 rounds, zeros for the masked keys; the
// gradient with respect to the scores within the bf16 rounding of its
// double-precision value; the same bits on every instruction set (rows
// shorter than, equal to and longer than the 16 summing lanes, with tails).
TEST(ActivationsTest, AttentionSoftmaxMatchesDoublePrecisionWithTheSameBitsOnEveryIsa) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  const float scale = 0.125f;
  for (const int64_t n : {int64_t(1), int64_t(7), int64_t(16), int64_t(40), int64_t(256)}) {
    for (const int64_t valid : {int64_t(1), (n + 1) / 2, n}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " valid " << valid);
      std::vector<uint16_t> s(static_cast<size_t>(n)), dp(s.size());
      for (auto& v : s) v = F32ToBf16(normal(rng));
      for (auto& v : dp) v = F32ToBf16(normal(rng) / 8);
      double mx = -INFINITY, sum = 0, dot = 0;
      for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, double(Bf16ToF32(s[size_t(j)])) * scale);
      for (int64_t j = 0; j < valid; ++j) sum += std::exp(double(Bf16ToF32(s[size_t(j)])) * scale - mx);
      std::vector<double> want(static_cast<size_t>(valid));
      for (int64_t j = 0; j < valid; ++j) {
        want[size_t(j)] = std::exp(double(Bf16ToF32(s[size_t(j)])) * scale - mx) / sum;
        dot += want[size_t(j)] * double(Bf16ToF32(dp[size_t(j)]));
      }
      std::vector<float> first_p;
      std::vector<uint16_t> first_pb, first_ds;
      for (Isa isa : Isas()) {
        SCOPED_TRACE(IsaName(isa));
        IsaGuard guard(isa);
        std::vector<float> p(static_cast<size_t>(valid));
        std::vector<uint16_t> pb(s.size(), 0xABCD), ds = dp;
        AttentionSoftmaxBf16(s.data(), valid, n, scale, p.data(), pb.data());
        AttentionSoftmaxBf16Backward(p.data(), ds.data(), valid, n, scale, ds.data());  // in place, as the trainer calls it
        for (int64_t j = 0; j < n; ++j) {
          const size_t i = size_t(j);
          if (j >= valid) {
            ASSERT_EQ(pb[i], 0) << j;
            ASSERT_EQ(ds[i], 0) << j;
            continue;
          }
          ASSERT_NEAR(p[i], want[i], 2e-6 * want[i] + 1e-12) << j;
          ASSERT_EQ(pb[i], F32ToBf16(p[i])) << j;
          const double dp_j = double(Bf16ToF32(dp[i]));
          const double ds_want = want[i] * (dp_j - dot) * scale;
          const double ds_bound = want[i] * (std::fabs(dp_j) + std::fabs(dot)) * scale * 1e-5 + std::fabs(ds_want) / 256;
          ASSERT_NEAR(Bf16ToF32(ds[i]), ds_want, ds_bound) << j;
        }
        if (first_p.empty()) {
          first_p = p, first_pb = pb, first_ds = ds;
        } else {
          EXPECT_EQ(0, std::memcmp(p.data(), first_p.data(), p.size() * sizeof(float)));
          EXPECT_EQ(pb, first_pb);
          EXPECT_EQ(ds, first_ds);
        }
      }
    }
  }
}

TEST(ThreadPoolTest, RunsEveryChunkExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.Run(n, [&](int64_t c) { hits[size_t(c)].fetch_add(1); });
    for (int64_t c = 0; c < n; ++c) ASSERT_EQ(hits[size_t(c)].load(), 1) << n << " " << c;
  }
}

TEST(ThreadPoolTest, ConcurrentCallersEachFinishTheirOwnJob) {
  ThreadPool pool(2);
  std::vector<std::thread> callers;
  std::atomic<int64_t> total{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) pool.Run(16, [&](int64_t) { total.fetch_add(1); });
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 4 * 200 * 16);
}

TEST(ThreadPoolTest, OneActiveThreadRunsInline) {
  ThreadPool pool(2);
  pool.set_active(1);
  std::thread::id caller = std::this_thread::get_id();
  bool all_inline = true;
  pool.Run(64, [&](int64_t) { all_inline = all_inline && std::this_thread::get_id() == caller; });
  EXPECT_TRUE(all_inline);
}

}  // namespace
}  // namespace attune::runtime::kernels
