// Scalar kernels and the run-time choice of implementation.
#include "runtime/src/kernels/quant_dot.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "runtime/src/kernels/quant_blocks.h"

namespace attune::runtime::kernels {
namespace {

void ScalarDotRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const void* xq, int64_t n, float* y) {
  for (int64_t r = 0; r < rows; ++r) y[r] = DotRowGeneric(type, w + size_t(r) * row_bytes, xq, n);
}

void ScalarDequantizeRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, float* dst) {
  for (int64_t r = 0; r < rows; ++r) DequantRow(type, w + size_t(r) * row_bytes, dst + r * n, n);
}

void ScalarDequantizeRowsBf16(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, uint16_t* dst) {
  thread_local std::vector<float> row;
  row.resize(size_t(n));
  for (int64_t r = 0; r < rows; ++r) DequantRowBf16(type, w + size_t(r) * row_bytes, dst + r * n, n, row.data());
}

void ScalarDotRowsMulti(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const uint8_t* xq,
                        size_t xq_stride, int64_t m, int64_t n, float* y, int64_t y_stride) {
  for (int64_t i = 0; i < m; ++i) ScalarDotRows(type, w, row_bytes, rows, xq + xq_stride * size_t(i), n, y + i * y_stride);
}

const KernelTable kScalar = {QuantizeGeneric, ScalarDotRows, ScalarDotRowsMulti, ScalarDequantizeRows,
                             ScalarDequantizeRowsBf16};

Isa BestIsa() {
  if (const char* env = std::getenv("ATTUNE_KERNELS")) {
    if (std::strcmp(env, "scalar") == 0) return Isa::kScalar;
    if (std::strcmp(env, "avx2") == 0 && IsaSupported(Isa::kAvx2)) return Isa::kAvx2;
    if (std::strcmp(env, "avx512") == 0 && IsaSupported(Isa::kAvx512)) return Isa::kAvx512;
  }
  if (IsaSupported(Isa::kAvx512)) return Isa::kAvx512;
  if (IsaSupported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}

std::atomic<int> g_isa{-1};

const KernelTable& Table() {
  int isa = g_isa.load(std::memory_order_acquire);
  if (isa < 0) {
    isa = int(BestIsa());
    g_isa.store(isa, std::memory_order_release);
  }
  if (isa == int(Isa::kAvx512)) return *Avx512Kernels();
  if (isa == int(Isa::kAvx2)) return *Avx2Kernels();
  return kScalar;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

bool IsaSupported(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2:
#if defined(__x86_64__)
      return Avx2Kernels() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
#else
      return false;
#endif
    case Isa::kAvx512:
#if defined(__x86_64__)
      return Avx512Kernels() && IsaSupported(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
#else
      return false;
#endif
  }
  return false;
}

Isa ActiveIsa() {
  Table();
  return Isa(g_isa.load(std::memory_order_acquire));
}

void ForceIsa(Isa isa) { g_isa.store(IsaSupported(isa) ? int(isa) : int(Isa::kScalar), std::memory_order_release); }

const KernelTable& ScalarKernels() { return kScalar; }

bool Supported(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16:
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ5_0: case GgmlType::kQ5_1: case GgmlType::kQ8_0:
    case GgmlType::kQ4_K: case GgmlType::kQ5_K: case GgmlType::kQ6_K:
      return true;
  }
  return false;
}

int64_t BlockElems(GgmlType type) { return IsFloat(type) ? 1 : UsesQ8K(type) ? kQKK : kQK; }

size_t ActivationBytes(GgmlType type, int64_t n) {
  if (IsFloat(type)) return size_t(n) * sizeof(float);
  if (UsesQ8K(type)) return size_t(n / kQKK) * sizeof(BlockQ8K);
  return size_t(n / kQK) * sizeof(BlockQ8);
}

void QuantizeActivation(GgmlType type, const float* x, void* out, int64_t n) { Table().quantize(type, x, out, n); }

void DotRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const void* xq, int64_t n, float* y) {
  Table().dot_rows(type, w, row_bytes, rows, xq, n, y);
}

bool FastMultiRows(GgmlType type) {
  if (ActiveIsa() == Isa::kScalar) return false;
  switch (type) {
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ8_0:
    case GgmlType::kQ4_K: case GgmlType::kQ5_K: case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void DotRowsMulti(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, const uint8_t* xq, size_t xq_stride,
                  int64_t m, int64_t n, float* y, int64_t y_stride) {
  Table().dot_rows_multi(type, w, row_bytes, rows, xq, xq_stride, m, n, y, y_stride);
}

void DequantizeRows(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, float* dst) {
  Table().dequantize_rows(type, w, row_bytes, rows, n, dst);
}

void DequantizeRowsBf16(GgmlType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t n, uint16_t* dst) {
  Table().dequantize_rows_bf16(type, w, row_bytes, rows, n, dst);
}

}  // namespace attune::runtime::kernels
