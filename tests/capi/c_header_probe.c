/* Compiled by check_public_headers.cmake as strict C99 and as C++. */
#include "attune/attune.h"

int attune_probe(attune_assistant* a);
int attune_probe(attune_assistant* a) {
  char* reply = 0;
  attune_error e = attune_chat(a, "[]", 0, 0, 0, &reply);
  return (int)e + ATTUNE_ABI_VERSION;
}
