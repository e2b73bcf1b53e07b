# `cmake --install` into a fresh prefix, then an outside project finds it:
#   1. examples/c configured with find_package(Attune CONFIG REQUIRED) against
#      the prefix, built, and run on the tiny model;
#   2. the same example compiled by hand with pkg-config's flags, and run;
#   3. the installed include folder holds attune/attune.h and nothing of
#      LibTorch, RocksDB or protobuf.
# Run: cmake -DBUILD_DIR= -DSOURCE_DIR= -DOUT= -DCC= -DGENERATOR= -P check_install.cmake
set(prefix ${OUT}/prefix)
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

file(GLOB_RECURSE headers RELATIVE ${prefix}/include ${prefix}/include/*)
if(NOT headers STREQUAL "attune/attune.h")
  message(FATAL_ERROR "installed headers should be exactly attune/attune.h, got: ${headers}")
endif()

set(model ${SOURCE_DIR}/tests/fixtures/models/tiny_llama.gguf)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/c -B ${OUT}/consumer -G ${GENERATOR}
    -DCMAKE_C_COMPILER=${CC} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${OUT}/consumer)
run(${OUT}/consumer/attune_chat_c ${model} ${OUT}/data-cmake "hello")
if(NOT run_out MATCHES "\"finish_reason\":" OR NOT run_out MATCHES "\"stored_events\":1")
  message(FATAL_ERROR "the example built with find_package did not chat and record feedback:\n${run_out}")
endif()

# pkg-config, as a Makefile-based app would use it.
file(GLOB pc_file ${prefix}/lib*/pkgconfig/attune.pc ${prefix}/lib/*/pkgconfig/attune.pc)
if(NOT pc_file)
  message(FATAL_ERROR "no attune.pc installed under ${prefix}")
endif()
get_filename_component(pc_dir ${pc_file} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
run(pkg-config --cflags --libs attune)
string(STRIP "${run_out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
string(REGEX MATCH "-L[^;]*" libflag "${flags}")
string(SUBSTRING "${libflag}" 2 -1 libdir)
run(${CC} ${SOURCE_DIR}/examples/c/chat.c -o ${OUT}/chat_pkgconfig ${flags} -Wl,-rpath,${libdir})
run(${OUT}/chat_pkgconfig ${model} ${OUT}/data-pkgconfig "hello")
if(NOT run_out MATCHES "\"stored_events\":1")
  message(FATAL_ERROR "the example built with pkg-config did not run:\n${run_out}")
endif()
message(STATUS "installed to ${prefix}; find_package and pkg-config builds of examples/c ran")
