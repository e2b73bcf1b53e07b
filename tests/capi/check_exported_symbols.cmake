# libattune.so exports exactly the symbols in exported_symbols.txt (name and
# version node), so an accidental export or a removal fails CI. After a
# deliberate change to attune.h, regenerate the list with:
#   nm -D --defined-only build/assistant/libattune.so | awk '{print $3}' | sort > tests/capi/exported_symbols.txt
# Run: cmake -DNM=... -DLIB=... -DEXPECTED=... -P check_exported_symbols.cmake
execute_process(COMMAND ${NM} -D --defined-only ${LIB} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIB}")
endif()
string(REGEX REPLACE "\n$" "" out "${out}")
string(REPLACE "\n" ";" lines "${out}")
set(actual)
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^[0-9a-fA-F]* *[A-Za-z] " "" name "${line}")
  list(APPEND actual "${name}")
endforeach()
list(SORT actual)
file(STRINGS ${EXPECTED} expected)
list(SORT expected)
set(added ${actual})
list(REMOVE_ITEM added ${expected})
set(removed ${expected})
list(REMOVE_ITEM removed ${actual})
if(added OR removed)
  string(REPLACE ";" "\n  " added "${added}")
  string(REPLACE ";" "\n  " removed "${removed}")
  message(FATAL_ERROR "libattune.so's exports differ from ${EXPECTED}\n"
                      "exported but not listed:\n  ${added}\nlisted but not exported:\n  ${removed}\n"
                      "(a deliberate ABI change updates the list and follows the rules in attune.h)")
endif()
list(LENGTH actual n)
message(STATUS "libattune.so exports the ${n} pinned symbols")
