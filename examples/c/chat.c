/* A C app embedding Attune through its C ABI: open an assistant, stream a
 * reply, give it a thumbs-up by response id, print the status.
 * Usage: attune_chat_c MODEL DATA_DIR PROMPT
 * (Paths and the prompt go into JSON unescaped here; a real app builds its
 * JSON with a JSON library.) */
#include <attune/attune.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int Print(const char* text, size_t size, void* user_data) {
  (void)user_data;
  fwrite(text, 1, size, stdout);
  fflush(stdout);
  return 0; /* 0: go on; non-zero would cancel the reply */
}

static int Fail(const char* what, attune_error code) {
  fprintf(stderr, "%s failed: %s: %s\n", what, attune_error_name(code), attune_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL DATA_DIR PROMPT\n", argv[0]);
    return 2;
  }
  if (attune_abi_version() != ATTUNE_ABI_VERSION) {
    fprintf(stderr, "libattune ABI %d, header %d\n", attune_abi_version(), ATTUNE_ABI_VERSION);
    return 1;
  }
  char options[4096], messages[4096];
  snprintf(options, sizeof options,
           "{\"model_path\": \"%s\", \"data_dir\": \"%s\", \"chat_template\": \"chatml\", "
           "\"background_training\": false, \"generation\": {\"max_tokens\": 16}}",
           argv[1], argv[2]);
  snprintf(messages, sizeof messages, "[{\"role\": \"user\", \"content\": \"%s\"}]", argv[3]);

  attune_assistant* assistant = NULL;
  attune_error e = attune_open(options, &assistant);
  if (e != ATTUNE_OK) return Fail("open", e);

  char* reply = NULL;
  printf("attune %s> ", attune_version());
  e = attune_chat(assistant, messages, Print, NULL, NULL, &reply);
  printf("\n");
  if (e != ATTUNE_OK) return Fail("chat", e);
  printf("reply: %s\n", reply);

  /* The response id ties feedback to the reply (and its adapter version). */
  char response_id[128] = {0};
  const char* p = strstr(reply, "\"response_id\":\"");
  if (p) sscanf(p + strlen("\"response_id\":\""), "%127[^\"]", response_id);
  attune_string_free(reply);
  char* event_id = NULL;
  e = attune_record_feedback(assistant, "{\"user_id\": \"me\", \"rating\": {\"thumb\": \"UP\"}}", response_id,
                             &event_id);
  if (e != ATTUNE_OK) return Fail("record feedback", e);
  printf("feedback: %s\n", event_id);
  attune_string_free(event_id);

  char* status = NULL;
  e = attune_get_status(assistant, &status);
  if (e != ATTUNE_OK) return Fail("status", e);
  printf("status: %s\n", status);
  attune_string_free(status);
  e = attune_close(assistant);
  if (e != ATTUNE_OK) return Fail("close", e);
  return 0;
}
