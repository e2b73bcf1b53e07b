# The public app headers compile with no LibTorch, RocksDB or protobuf
# header in their include closure: attune/assistant.h (C++) with only the
# module include folders, and attune/attune.h as strict C99 and as C++.
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

foreach(lang c99 c++17)
  if(lang STREQUAL c99)
    set(cmd ${CC} -std=c99 -x c)
  else()
    set(cmd ${CXX} -std=c++17 -x c++)
  endif()
  execute_process(
    COMMAND ${cmd} -Wall -Wextra -pedantic -Werror -fsyntax-only -I${SOURCE_DIR}/assistant/include
            ${SOURCE_DIR}/tests/capi/c_header_probe.c
    RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "attune/attune.h does not compile as ${lang}:\n${err}")
  endif()
endforeach()
message(STATUS "public headers are free of LibTorch, RocksDB and protobuf; attune.h is C99 and C++")
