#include "attune/runtime/ggml_types.h"

#include <cstring>

namespace attune::runtime {
namespace {

constexpr size_t kQK = 32;    // elements per block of the legacy quants
constexpr size_t kQKK = 256;  // elements per K-quant super-block

inline uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void DequantQ4_0(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 18, y += kQK) {
    const float d = HalfToFloat(Load16(b));
    const uint8_t* qs = b + 2;
    for (size_t j = 0; j < kQK / 2; ++j) {
      y[j] = (int(qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = (int(qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 20, y += kQK) {
    const float d = HalfToFloat(Load16(b));
    const float m = HalfToFloat(Load16(b + 2));
    const uint8_t* qs = b + 4;
    for (size_t j = 0; j < kQK / 2; ++j) {
      y[j] = (qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = (qs[j] >> 4) * d + m;
    }
  }
}

void DequantQ5_0(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 22, y += kQK) {
    const float d = HalfToFloat(Load16(b));
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const uint8_t* qs = b + 6;
    for (size_t j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      y[j] = (int((qs[j] & 0x0F) | xh0) - 16) * d;
      y[j + kQK / 2] = (int((qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

void DequantQ5_1(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 24, y += kQK) {
    const float d = HalfToFloat(Load16(b));
    const float m = HalfToFloat(Load16(b + 2));
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const uint8_t* qs = b + 8;
    for (size_t j = 0; j < kQK / 2; ++j) {
      const uint8_t xh0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh1 = (qh >> (j + 12)) & 0x10;
      y[j] = ((qs[j] & 0x0F) | xh0) * d + m;
      y[j + kQK / 2] = ((qs[j] >> 4) | xh1) * d + m;
    }
  }
}

void DequantQ8_0(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 34, y += kQK) {
    const float d = HalfToFloat(Load16(b));
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (size_t j = 0; j < kQK; ++j) y[j] = qs[j] * d;
  }
}

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

void DequantQ4_K(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 144) {
    const float d = HalfToFloat(Load16(b));
    const float min = HalfToFloat(Load16(b + 2));
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (size_t j = 0; j < kQKK; j += 64) {
      ScaleMinK4(is + 0, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void DequantQ5_K(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 176) {
    const float d = HalfToFloat(Load16(b));
    const float min = HalfToFloat(Load16(b + 2));
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    int is = 0;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (size_t j = 0; j < kQKK; j += 64) {
      ScaleMinK4(is + 0, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

void DequantQ6_K(const uint8_t* b, float* y, size_t nb) {
  for (size_t i = 0; i < nb; ++i, b += 210) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = HalfToFloat(Load16(b + 208));
    for (size_t n = 0; n < kQKK; n += 128) {
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

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float BFloat16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::optional<GgmlTypeTraits> GetGgmlTypeTraits(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return GgmlTypeTraits{"F32", 1, 4};
    case GgmlType::kF16: return GgmlTypeTraits{"F16", 1, 2};
    case GgmlType::kBF16: return GgmlTypeTraits{"BF16", 1, 2};
    case GgmlType::kQ4_0: return GgmlTypeTraits{"Q4_0", kQK, 18};
    case GgmlType::kQ4_1: return GgmlTypeTraits{"Q4_1", kQK, 20};
    case GgmlType::kQ5_0: return GgmlTypeTraits{"Q5_0", kQK, 22};
    case GgmlType::kQ5_1: return GgmlTypeTraits{"Q5_1", kQK, 24};
    case GgmlType::kQ8_0: return GgmlTypeTraits{"Q8_0", kQK, 34};
    case GgmlType::kQ4_K: return GgmlTypeTraits{"Q4_K", kQKK, 144};
    case GgmlType::kQ5_K: return GgmlTypeTraits{"Q5_K", kQKK, 176};
    case GgmlType::kQ6_K: return GgmlTypeTraits{"Q6_K", kQKK, 210};
  }
  return std::nullopt;
}

size_t GgmlRowBytes(GgmlType type, size_t n) {
  auto t = GetGgmlTypeTraits(static_cast<uint32_t>(type));
  return n / t->block_elems * t->block_bytes;
}

void DequantizeRow(GgmlType type, const void* src, float* dst, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case GgmlType::kF16:
      for (size_t i = 0; i < n; ++i) dst[i] = HalfToFloat(Load16(b + 2 * i));
      return;
    case GgmlType::kBF16:
      for (size_t i = 0; i < n; ++i) dst[i] = BFloat16ToFloat(Load16(b + 2 * i));
      return;
    case GgmlType::kQ4_0: return DequantQ4_0(b, dst, n / kQK);
    case GgmlType::kQ4_1: return DequantQ4_1(b, dst, n / kQK);
    case GgmlType::kQ5_0: return DequantQ5_0(b, dst, n / kQK);
    case GgmlType::kQ5_1: return DequantQ5_1(b, dst, n / kQK);
    case GgmlType::kQ8_0: return DequantQ8_0(b, dst, n / kQK);
    case GgmlType::kQ4_K: return DequantQ4_K(b, dst, n / kQKK);
    case GgmlType::kQ5_K: return DequantQ5_K(b, dst, n / kQKK);
    case GgmlType::kQ6_K: return DequantQ6_K(b, dst, n / kQKK);
  }
}

}  // namespace attune::runtime
