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
# that every LibTorch translation unit of ours uses. One such header is about
# 250 MB and takes longer to build than most of our sources, so targets share
# one per family of flags that decide whether GCC accepts it: the runtime
# (-fPIC and -fopenmp, which defines _OPENMP for ATen's parallel header), the
# other libraries (-fPIC) and executables (tests, benchmarks, tools). The
# latter two are built once by the two donor targets below.
set(ATTUNE_TORCH_PCH_HEADERS
  <ATen/core/Tensor.h> <ATen/Functions.h> <ATen/ops/matmul.h> <c10/core/ScalarType.h>)
if(ATTUNE_WITH_TORCH)
  foreach(pic IN ITEMS OFF ON)
    set(donor attune_torch_pch_exe)
    if(pic)
      set(donor attune_torch_pch_lib)
    endif()
    add_library(${donor} OBJECT EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cc)
    set_target_properties(${donor} PROPERTIES POSITION_INDEPENDENT_CODE ${pic})
    target_link_libraries(${donor} PRIVATE attune_torch)
    target_precompile_headers(${donor} PRIVATE ${ATTUNE_TORCH_PCH_HEADERS})
  endforeach()
endif()
function(attune_torch_pch target)
  get_target_property(type ${target} TYPE)
  if(target STREQUAL "attune_runtime")
    target_precompile_headers(${target} PRIVATE ${ATTUNE_TORCH_PCH_HEADERS})
  elseif(type STREQUAL "EXECUTABLE")
    target_precompile_headers(${target} REUSE_FROM attune_torch_pch_exe)
  else()
    target_precompile_headers(${target} REUSE_FROM attune_torch_pch_lib)
  endif()
endfunction()
