# The public app headers compile with no LibTorch, RocksDB or protobuf
# header in their include closure: attune/assistant.h (C++) with only the
# module include folders.
# Run: cmake -DCXX=... -DCC=... -DSOURCE_DIR=... -DOUT=... -P check_public_headers.cmake
set(dirs assistant core feedback runtime trainer adapters replay)
set(includes)
foreach(d IN LISTS dirs)
  list(APPEND includes -I${SOURCE_DIR}/${d}/include)
endforeach()

execute_process(
  COMMAND ${CXX} -std=c++20 -Wall -Wextra -Werror -fsyntax-only -MD -MF ${OUT}/app_header_probe.d
          ${includes} ${SOURCE_DIR}/tests/capi/app_header_probe.cc
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "attune/assistant.h does not compile without LibTorch's include path:\n${err}")
endif()
file(READ ${OUT}/app_header_probe.d deps)
string(REGEX MATCHALL "[^ \\\\\n]*(ATen|c10|torch|rocksdb|google/protobuf|\\.pb\\.h)[^ \\\\\n]*" bad "${deps}")
if(bad)
  list(REMOVE_DUPLICATES bad)
  string(REPLACE ";" "\n  " bad "${bad}")
  message(FATAL_ERROR "attune/assistant.h pulls in headers apps must not need:\n  ${bad}")
endif()

message(STATUS "public headers are free of LibTorch, RocksDB and protobuf")
