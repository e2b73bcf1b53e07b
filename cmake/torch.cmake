# LibTorch from Debian's libtorch-dev. We link the CPU libraries directly
# instead of find_package(Torch): it is faster to configure and avoids the
# CUDA probing in TorchConfig.cmake.
if(ATTUNE_WITH_TORCH)
  find_library(TORCH_CPU_LIB torch_cpu REQUIRED)
  find_library(C10_LIB c10 REQUIRED)
  add_library(attune_torch INTERFACE)
  target_link_libraries(attune_torch INTERFACE ${TORCH_CPU_LIB} ${C10_LIB})
  target_include_directories(attune_torch SYSTEM INTERFACE /usr/include/torch/csrc/api/include)
endif()

# attune_torch_pch(target): precompiled header with the narrow ATen headers
# that every LibTorch translation unit of ours uses.
function(attune_torch_pch target)
  target_precompile_headers(${target} PRIVATE
    <ATen/core/Tensor.h> <ATen/Functions.h> <ATen/ops/matmul.h> <c10/core/ScalarType.h>)
endfunction()
