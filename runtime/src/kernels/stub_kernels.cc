// Non-x86 builds: only the scalar kernels exist.
#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime::kernels {
const KernelTable* Avx2Kernels() { return nullptr; }
const KernelTable* Avx512Kernels() { return nullptr; }
}  // namespace attune::runtime::kernels
