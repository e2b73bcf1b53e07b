// Block-level scalar code shared by every kernel implementation: half
// conversion, dequantization of one GGUF block row, 8-bit activation
// quantization and the integer dot products of each block type.
//
// Everything has internal linkage: each kernel translation unit (compiled for
// its own instruction set) gets its own copy, so the compiler may vectorize it
// for that ISA without breaking the one-definition rule.
//
// Layouts and dequantization: ggml-common.h / ggml-quants.c (quantization
// version 2). Dequantization reproduces ggml's reference C code operation by
// operation, so it is bit-identical to ggml and to the `gguf` package.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "attune/runtime/ggml_types.h"
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime::kernels {
namespace {

constexpr int kQK = 32;    // elements per block of the legacy quants
constexpr int kQKK = 256;  // elements per K-quant super-block

inline uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline float BitsToF32(uint32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline uint32_t F32ToBits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}

// Exact IEEE half -> float, subnormals included, without branches on the
// exponent (the method of Maratyszcza's FP16 library).
inline float Fp16ToF32(uint16_t h) {
  const uint32_t w = uint32_t(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = BitsToF32((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = BitsToF32((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t bits = two_w < (1u << 27) ? F32ToBits(denormalized) : F32ToBits(normalized);
  return BitsToF32(sign | bits);
}
inline float Bf16ToF32(uint16_t h) { return BitsToF32(uint32_t(h) << 16); }

// float -> IEEE half, round to nearest even (the same method, as ggml uses
// where F16C is absent; F16C rounds identically).
inline uint16_t F32ToFp16(float f) {
  float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = F32ToBits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = BitsToF32((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = F32ToBits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return uint16_t((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}
// The value ggml stores for an activation scale: rounded to half.
inline float RoundToHalf(float f) { return Fp16ToF32(F32ToFp16(f)); }

// ggml's get_scale_min_k4: 6-bit scales and mins packed in 12 bytes.
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// ---- dequantization of nb blocks ------------------------------------------

inline void DequantQ4_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 18, y += kQK) {
    const float d = Fp16ToF32(Load16(b));
    const uint8_t* qs = b + 2;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (int(qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = (int(qs[j] >> 4) - 8) * d;
    }
  }
}

inline void DequantQ4_1(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 20, y += kQK) {
    const float d = Fp16ToF32(Load16(b));
    const float m = Fp16ToF32(Load16(b + 2));
    const uint8_t* qs = b + 4;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = (qs[j] >> 4) * d + m;
    }
  }
}

inline void DequantQ5_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 22, y += kQK) {
    const float d = Fp16ToF32(Load16(b));
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      y[j] = (int((qs[j] & 0x0F) | xh0) - 16) * d;
      y[j + kQK / 2] = (int((qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

inline void DequantQ5_1(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 24, y += kQK) {
    const float d = Fp16ToF32(Load16(b));
    const float m = Fp16ToF32(Load16(b + 2));
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      y[j] = ((qs[j] & 0x0F) | xh0) * d + m;
      y[j + kQK / 2] = ((qs[j] >> 4) | xh1) * d + m;
    }
  }
}

inline void DequantQ8_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 34, y += kQK) {
    const float d = Fp16ToF32(Load16(b));
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < kQK; ++j) y[j] = qs[j] * d;
  }
}

inline void DequantQ4_K(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 144) {
    const float d = Fp16ToF32(Load16(b));
    const float min = Fp16ToF32(Load16(b + 2));
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < kQKK; j += 64) {
      ScaleMinK4(is + 0, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) y[l] = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) y[32 + l] = d2 * (q[l] >> 4) - m2;
      y += 64;
      q += 32;
      is += 2;
    }
  }
}

inline void DequantQ5_K(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 176) {
    const float d = Fp16ToF32(Load16(b));
    const float min = Fp16ToF32(Load16(b + 2));
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    int is = 0;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0; j < kQKK; j += 64) {
      ScaleMinK4(is + 0, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) y[l] = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) y[32 + l] = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      y += 64;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

inline void DequantQ6_K(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 210) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = Fp16ToF32(Load16(b + 208));
    for (int n = 0; n < kQKK; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int8_t q1 = int8_t((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int8_t q2 = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int8_t q3 = int8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int8_t q4 = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// Dequantizes one row of n elements.
inline void DequantRow(GgmlType type, const uint8_t* b, float* y, int64_t n) {
  switch (type) {
    case GgmlType::kF32: std::memcpy(y, b, size_t(n) * 4); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = Fp16ToF32(Load16(b + 2 * i));
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = Bf16ToF32(Load16(b + 2 * i));
      return;
    case GgmlType::kQ4_0: return DequantQ4_0(b, y, n / kQK);
    case GgmlType::kQ4_1: return DequantQ4_1(b, y, n / kQK);
    case GgmlType::kQ5_0: return DequantQ5_0(b, y, n / kQK);
    case GgmlType::kQ5_1: return DequantQ5_1(b, y, n / kQK);
    case GgmlType::kQ8_0: return DequantQ8_0(b, y, n / kQK);
    case GgmlType::kQ4_K: return DequantQ4_K(b, y, n / kQKK);
    case GgmlType::kQ5_K: return DequantQ5_K(b, y, n / kQKK);
    case GgmlType::kQ6_K: return DequantQ6_K(b, y, n / kQKK);
  }
}

// float -> bf16, rounded to nearest even; NaN -> 0x7FC0 (LibTorch's
// c10::detail::round_to_nearest_even).
inline uint16_t F32ToBf16(float f) {
  if (std::isnan(f)) return 0x7FC0;
  const uint32_t u = F32ToBits(f);
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Dequantizes one row to bf16 through `scratch` (n floats).
inline void DequantRowBf16(GgmlType type, const uint8_t* b, uint16_t* y, int64_t n, float* scratch) {
  DequantRow(type, b, scratch, n);
  for (int64_t i = 0; i < n; ++i) y[i] = F32ToBf16(scratch[i]);
}

// ---- activation quantization ----------------------------------------------
// As ggml's quantize_row_q8_0/q8_1: the quants use the exact scale, the block
// stores it (and s = d·Σq) rounded to half, so our dot products see the same
// activation as llama.cpp's.

inline bool UsesQ8K(GgmlType t) { return t == GgmlType::kQ4_K || t == GgmlType::kQ5_K || t == GgmlType::kQ6_K; }
inline bool IsFloat(GgmlType t) { return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16; }

inline void QuantizeQ8Scalar(const float* x, BlockQ8* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = int(std::nearbyint(x[j] * id));
      y[i].qs[j] = int8_t(q);
      sum += q;
    }
    y[i].d = RoundToHalf(d);
    y[i].s = RoundToHalf(d * float(sum));
  }
}

inline void QuantizeQ8KScalar(const float* x, BlockQ8K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float amax = 0;
    for (int j = 0; j < kQKK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQKK; ++j) y[i].qs[j] = int8_t(int(std::nearbyint(x[j] * id)));
    for (int g = 0; g < kQKK / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += y[i].qs[g * 16 + j];
      y[i].bsums[g] = int16_t(s);
    }
    y[i].d = d;
  }
}

// ---- integer dot products of one row (nb blocks) with an activation row ----

inline float DotQ4_0(const uint8_t* b, const BlockQ8* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 18) {
    const uint8_t* qs = b + 2;
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j) s += (int(qs[j] & 0xF) - 8) * x[i].qs[j] + (int(qs[j] >> 4) - 8) * x[i].qs[j + 16];
    acc += Fp16ToF32(Load16(b)) * x[i].d * float(s);
  }
  return acc;
}

inline float DotQ4_1(const uint8_t* b, const BlockQ8* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 20) {
    const uint8_t* qs = b + 4;
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j) s += int(qs[j] & 0xF) * x[i].qs[j] + int(qs[j] >> 4) * x[i].qs[j + 16];
    acc += Fp16ToF32(Load16(b)) * x[i].d * float(s) + Fp16ToF32(Load16(b + 2)) * x[i].s;
  }
  return acc;
}

inline float DotQ5_0(const uint8_t* b, const BlockQ8* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 22) {
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const uint8_t* qs = b + 6;
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int v0 = int((qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) - 16;
      const int v1 = int((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
      s += v0 * x[i].qs[j] + v1 * x[i].qs[j + 16];
    }
    acc += Fp16ToF32(Load16(b)) * x[i].d * float(s);
  }
  return acc;
}

inline float DotQ5_1(const uint8_t* b, const BlockQ8* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 24) {
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const uint8_t* qs = b + 8;
    int s = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int v0 = int((qs[j] & 0xF) | (((qh >> j) << 4) & 0x10));
      const int v1 = int((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
      s += v0 * x[i].qs[j] + v1 * x[i].qs[j + 16];
    }
    acc += Fp16ToF32(Load16(b)) * x[i].d * float(s) + Fp16ToF32(Load16(b + 2)) * x[i].s;
  }
  return acc;
}

inline float DotQ8_0(const uint8_t* b, const BlockQ8* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 34) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    int s = 0;
    for (int j = 0; j < kQK; ++j) s += qs[j] * x[i].qs[j];
    acc += Fp16ToF32(Load16(b)) * x[i].d * float(s);
  }
  return acc;
}

inline float DotQ4_K(const uint8_t* b, const BlockQ8K* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 144) {
    const float d = Fp16ToF32(Load16(b)) * x[i].d, dmin = Fp16ToF32(Load16(b + 2)) * x[i].d;
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    const int8_t* q8 = x[i].qs;
    int sumi = 0, summ = 0;
    for (int j = 0; j < 4; ++j, q += 32, q8 += 64) {
      uint8_t sc1, m1, sc2, m2;
      ScaleMinK4(2 * j, scales, &sc1, &m1);
      ScaleMinK4(2 * j + 1, scales, &sc2, &m2);
      int s1 = 0, s2 = 0;
      for (int l = 0; l < 32; ++l) {
        s1 += int(q[l] & 0xF) * q8[l];
        s2 += int(q[l] >> 4) * q8[32 + l];
      }
      sumi += sc1 * s1 + sc2 * s2;
      summ += m1 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m2 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
    }
    acc += d * float(sumi) - dmin * float(summ);
  }
  return acc;
}

inline float DotQ5_K(const uint8_t* b, const BlockQ8K* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 176) {
    const float d = Fp16ToF32(Load16(b)) * x[i].d, dmin = Fp16ToF32(Load16(b + 2)) * x[i].d;
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    const int8_t* q8 = x[i].qs;
    int sumi = 0, summ = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 4; ++j, ql += 32, q8 += 64, u1 <<= 2, u2 <<= 2) {
      uint8_t sc1, m1, sc2, m2;
      ScaleMinK4(2 * j, scales, &sc1, &m1);
      ScaleMinK4(2 * j + 1, scales, &sc2, &m2);
      int s1 = 0, s2 = 0;
      for (int l = 0; l < 32; ++l) {
        s1 += int((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) * q8[l];
        s2 += int((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) * q8[32 + l];
      }
      sumi += sc1 * s1 + sc2 * s2;
      summ += m1 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m2 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
    }
    acc += d * float(sumi) - dmin * float(summ);
  }
  return acc;
}

inline float DotQ6_K(const uint8_t* b, const BlockQ8K* x, int64_t nb) {
  float acc = 0;
  for (int64_t i = 0; i < nb; ++i, b += 210) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const int8_t* q8 = x[i].qs;
    int sumi = 0;
    for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, q8 += 128) {
      int s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        s[is + 0] += q1 * q8[l];
        s[is + 2] += q2 * q8[l + 32];
        s[is + 4] += q3 * q8[l + 64];
        s[is + 6] += q4 * q8[l + 96];
      }
      for (int k = 0; k < 8; ++k) sumi += sc[k] * s[k];
    }
    acc += Fp16ToF32(Load16(b + 208)) * x[i].d * float(sumi);
  }
  return acc;
}

inline float DotF32(const float* w, const float* x, int64_t n) {
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += w[i] * x[i];
  return acc;
}

// Generic row loops over the per-block functions above.
inline void QuantizeGeneric(GgmlType type, const float* x, void* out, int64_t n) {
  if (IsFloat(type)) {
    std::memcpy(out, x, size_t(n) * 4);
  } else if (UsesQ8K(type)) {
    QuantizeQ8KScalar(x, static_cast<BlockQ8K*>(out), n / kQKK);
  } else {
    QuantizeQ8Scalar(x, static_cast<BlockQ8*>(out), n / kQK);
  }
}

inline float DotRowGeneric(GgmlType type, const uint8_t* w, const void* xq, int64_t n) {
  const auto* q8 = static_cast<const BlockQ8*>(xq);
  const auto* q8k = static_cast<const BlockQ8K*>(xq);
  const auto* xf = static_cast<const float*>(xq);
  switch (type) {
    case GgmlType::kQ4_0: return DotQ4_0(w, q8, n / kQK);
    case GgmlType::kQ4_1: return DotQ4_1(w, q8, n / kQK);
    case GgmlType::kQ5_0: return DotQ5_0(w, q8, n / kQK);
    case GgmlType::kQ5_1: return DotQ5_1(w, q8, n / kQK);
    case GgmlType::kQ8_0: return DotQ8_0(w, q8, n / kQK);
    case GgmlType::kQ4_K: return DotQ4_K(w, q8k, n / kQKK);
    case GgmlType::kQ5_K: return DotQ5_K(w, q8k, n / kQKK);
    case GgmlType::kQ6_K: return DotQ6_K(w, q8k, n / kQKK);
    case GgmlType::kF32: return DotF32(reinterpret_cast<const float*>(w), xf, n);
    case GgmlType::kF16: {
      float acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += Fp16ToF32(Load16(w + 2 * i)) * xf[i];
      return acc;
    }
    case GgmlType::kBF16: {
      float acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += Bf16ToF32(Load16(w + 2 * i)) * xf[i];
      return acc;
    }
  }
  return 0;
}

}  // namespace
}  // namespace attune::runtime::kernels
