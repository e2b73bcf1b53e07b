/* The C ABI from C: every bad input gives a code and a message (never a
 * crash), and the app's path works end to end on the tiny model: open,
 * stream a reply, cancel one, record feedback by response id, push device
 * state, read status, train, roll back, promote, forget, close; and between
 * two devices: export, trust, import, sync.
 * Usage: capi_test FIXTURES_DIR. Also built with ASan/UBSan (capi_asan_test). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attune/attune.h"

static int g_failures = 0;
static const char* g_fixtures = NULL;

#define CHECK(cond)                                                                                                  \
  do {                                                                                                               \
    if (!(cond)) {                                                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, attune_last_error()); \
      g_failures++;                                                                                                  \
    }                                                                                                                \
  } while (0)

/* `expr` returns `code` and leaves a message containing `needle`. */
#define CHECK_ERROR(expr, code, needle)                                                                             \
  do {                                                                                                              \
    attune_error e_ = (expr);                                                                                       \
    if (e_ != (code) || strstr(attune_last_error(), (needle)) == NULL) {                                            \
      fprintf(stderr, "%s:%d: %s returned %s (\"%s\"), expected %s mentioning \"%s\"\n", __FILE__, __LINE__, #expr, \
              attune_error_name(e_), attune_last_error(), attune_error_name(code), needle);                         \
      g_failures++;                                                                                                 \
    }                                                                                                               \
  } while (0)

#define CHECK_OK(expr) CHECK_ERROR(expr, ATTUNE_OK, "")

static int RemoveEntry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

typedef struct {
  char path[256];
} TempDir;

static void MakeTempDir(TempDir* d) {
  const char* base = getenv("TMPDIR");
  snprintf(d->path, sizeof d->path, "%s/attune_capi_XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(d->path)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void RemoveTempDir(TempDir* d) { nftw(d->path, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS); }

/* Options for the tiny model in `dir`: no background thread, short replies
 * that never stop early (so callbacks always see text), a few training steps
 * that promote by force (the tiny model's gate numbers are noise). */
static void TinyOptions(const char* dir, char* out, size_t n) {
  snprintf(out, n,
           "{\"data_dir\": \"%s\", \"model_path\": \"%s/models/tiny_llama.gguf\", "
           "\"chat_template\": \"chatml\", \"background_training\": false, \"serving_first\": true, "
           "\"generation\": {\"max_tokens\": 8, \"stop_at_eos\": false}, "
           "\"training\": {\"rank\": 4, \"alpha\": 8, \"dropout\": 0, \"max_steps\": 3, "
           "\"micro_batch_size\": 4, \"grad_accum_steps\": 1, \"learning_rate\": 0.01, "
           "\"max_seq_len\": 64, \"anchor_examples\": 0, \"forgetting_prompts\": [\"hi\"], "
           "\"force\": true}}",
           dir, g_fixtures);
}

static attune_assistant* OpenTiny(TempDir* dir) {
  char options[2048];
  MakeTempDir(dir);
  TinyOptions(dir->path, options, sizeof options);
  attune_assistant* a = NULL;
  CHECK_OK(attune_open(options, &a));
  CHECK(a != NULL);
  return a;
}

static const char* kHello = "[{\"role\": \"user\", \"content\": \"hello\"}]";

static void TestVersion(void) {
  CHECK(attune_abi_version() == ATTUNE_ABI_VERSION);
  CHECK(strlen(attune_version()) >= 5);
  CHECK(strcmp(attune_error_name(ATTUNE_ERR_CLOSED), "CLOSED") == 0);
  CHECK(strcmp(attune_error_name(12345), "UNKNOWN") == 0);
  attune_string_free(NULL);
  attune_cancel_free(NULL);
  attune_cancel_set(NULL);
}

static void TestNullHandleIsAnErrorEverywhere(void) {
  char* out = (char*)"untouched";
  CHECK_ERROR(attune_chat(NULL, kHello, NULL, NULL, NULL, &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK(out == NULL);
  CHECK_ERROR(attune_record_feedback(NULL, "{}", NULL, NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_set_device_state(NULL, "{}"), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_get_status(NULL, &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_train_now(NULL, NULL, NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_rollback(NULL, NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_promote(NULL, "v1", 0, NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_forget_user(NULL, "u", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_forget_event(NULL, "e", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_export(NULL, "", "bundle", "/tmp/x", &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_import(NULL, "/tmp/x", 0, &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_sync(NULL, "/tmp/x", &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_device_key(NULL, &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK_ERROR(attune_trust_device(NULL, "k", &out), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  CHECK(out == NULL);
  CHECK_ERROR(attune_close(NULL), ATTUNE_ERR_INVALID_ARGUMENT, "handle is null");
  /* A handle that was never opened is treated like a closed one. */
  CHECK_ERROR(attune_get_status((attune_assistant*)(size_t)0x7777777, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_open("{}", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "out is null");
  CHECK_ERROR(attune_cancel_new(NULL), ATTUNE_ERR_INVALID_ARGUMENT, "out is null");
}

static void TestBadOptionsNameWhatIsWrong(void) {
  attune_assistant* a = (attune_assistant*)(size_t)1;
  CHECK_ERROR(attune_open(NULL, &a), ATTUNE_ERR_INVALID_ARGUMENT, "options_json is null");
  CHECK(a == NULL);
  CHECK_ERROR(attune_open("{\"data_dir\": \"\xff\xfe\"}", &a), ATTUNE_ERR_INVALID_ARGUMENT, "UTF-8");
  CHECK_ERROR(attune_open("{\"data_dir\": ", &a), ATTUNE_ERR_INVALID_ARGUMENT, "malformed JSON");
  CHECK_ERROR(attune_open("{\"gate\": {\"replay_loss_floor\": -1}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "gate.replay_loss_floor must be >= 0");
  CHECK_ERROR(attune_open("{\"gate\": {\"min_new_loss_improvement\": 1}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "gate.min_new_loss_improvement must be in [0, 1)");
  CHECK_ERROR(attune_open("[1, 2]", &a), ATTUNE_ERR_INVALID_ARGUMENT, "expected a JSON object");
  CHECK_ERROR(attune_open("{\"data_dirr\": \"/tmp/x\"}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.data_dirr: unknown key");
  CHECK_ERROR(attune_open("{\"training\": {\"rank\": \"four\"}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.training.rank: expected an integer");
  CHECK_ERROR(attune_open("{\"training\": {\"targets\": \"q,zz\"}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.training.targets");
  CHECK_ERROR(attune_open("{\"window\": {\"min_battery\": 3}}", &a), ATTUNE_ERR_INVALID_ARGUMENT, "min_battery");
  CHECK_ERROR(attune_open("{\"generation\": {\"max_tokens\": 0}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.generation.max_tokens: 0 is outside");
  CHECK(a == NULL);
}

/* An integer above 2^63 - 1 (JSON has no limit) was refused with the
   negative number it wrapped to; it is refused as written. */
static void TestAnIntegerAboveInt64MaxIsReportedAsWrittenNotWrapped(void) {
  attune_assistant* a = NULL;
  CHECK_ERROR(attune_open("{\"generation\": {\"max_tokens\": 18446744073709551615}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.generation.max_tokens: 18446744073709551615 is outside");
  CHECK_ERROR(attune_open("{\"training\": {\"seed\": 9223372036854775808}}", &a), ATTUNE_ERR_INVALID_ARGUMENT,
              "options.training.seed: 9223372036854775808 is outside");
  CHECK(a == NULL);
}

static void TestMissingModelNamesTheModel(void) {
  TempDir dir;
  char options[1024];
  attune_assistant* a = NULL;
  MakeTempDir(&dir);
  snprintf(options, sizeof options, "{\"data_dir\": \"%s\", \"model_path\": \"%s/no_such.gguf\"}", dir.path, dir.path);
  CHECK(attune_open(options, &a) != ATTUNE_OK);
  CHECK(strstr(attune_last_error(), "no_such.gguf") != NULL);
  CHECK(a == NULL);
  RemoveTempDir(&dir);
}

typedef struct {
  int calls;
  size_t bytes;
  int cancel_after;           /* cancel on this call (1-based); 0 = never */
  attune_assistant* close_me; /* closed from inside the first call */
  attune_cancel* raise_me;    /* raised from inside the first call */
} Stream;

static int OnText(const char* text, size_t size, void* user_data) {
  Stream* s = (Stream*)user_data;
  s->calls++;
  s->bytes += size;
  if (strlen(text) != size) return 1; /* must be NUL-terminated at size */
  if (s->close_me && s->calls == 1) attune_close(s->close_me);
  if (s->raise_me && s->calls == 1) attune_cancel_set(s->raise_me);
  return s->cancel_after != 0 && s->calls >= s->cancel_after;
}

static void TestChatStreamsAndRecordsFeedbackByResponseId(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  Stream s = {0};
  char* reply = NULL;
  CHECK_OK(attune_chat(a, kHello, OnText, &s, NULL, &reply));
  CHECK(s.calls > 0 && s.bytes > 0);
  CHECK(reply != NULL && strstr(reply, "\"finish_reason\":\"length\"") != NULL);
  CHECK(reply != NULL && strstr(reply, "\"adapter_label\":\"base\"") != NULL);
  /* Pull the response id out of {"...","response_id":"r-...",...}. */
  char rid[128] = {0};
  const char* p = reply ? strstr(reply, "\"response_id\":\"") : NULL;
  CHECK(p != NULL);
  if (p) sscanf(p + strlen("\"response_id\":\""), "%127[^\"]", rid);
  attune_string_free(reply);

  char* id = NULL;
  CHECK_OK(attune_record_feedback(a, "{\"user_id\": \"u-1\", \"rating\": {\"thumb\": \"UP\"}}", rid, &id));
  CHECK(id != NULL && strstr(id, rid) != NULL);
  attune_string_free(id);
  CHECK_ERROR(attune_record_feedback(a, "{\"user_id\": \"u-1\", \"rating\": {\"thumb\": \"UP\"}}", "r-nope", &id),
              ATTUNE_ERR_NOT_FOUND, "r-nope");
  CHECK(id == NULL);
  CHECK_ERROR(attune_record_feedback(a, "{\"user_id\": \"u-1\", \"rating\": {\"thumb\": \"SIDEWAYS\"}}", rid, &id),
              ATTUNE_ERR_INVALID_ARGUMENT, "SIDEWAYS");
  CHECK_ERROR(attune_record_feedback(a, "{\"user_id\": \"u-1\"", rid, &id), ATTUNE_ERR_INVALID_ARGUMENT, "event_json");
  CHECK_ERROR(attune_record_feedback(a, "{}", "r-\xc3\x28", &id), ATTUNE_ERR_INVALID_ARGUMENT,
              "response_id is not well-formed UTF-8");
  CHECK_ERROR(attune_record_feedback(a, NULL, NULL, &id), ATTUNE_ERR_INVALID_ARGUMENT, "event_json is null");

  char* status = NULL;
  CHECK_OK(attune_get_status(a, &status));
  CHECK(status != NULL && strstr(status, "\"stored_events\":1") != NULL);
  attune_string_free(status);
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

static void TestBadChatInputs(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  char* reply = NULL;
  CHECK_ERROR(attune_chat(a, "[{\"role\": \"user\", \"content\": \"\xed\xa0\x80\"}]", NULL, NULL, NULL, &reply),
              ATTUNE_ERR_INVALID_ARGUMENT, "UTF-8"); /* a surrogate */
  CHECK_ERROR(attune_chat(a, "[]", NULL, NULL, NULL, &reply), ATTUNE_ERR_INVALID_ARGUMENT, "non-empty");
  CHECK_ERROR(attune_chat(a, "[{\"role\": \"robot\", \"content\": \"x\"}]", NULL, NULL, NULL, &reply),
              ATTUNE_ERR_INVALID_ARGUMENT, "messages[0].role");
  CHECK_ERROR(attune_chat(a, "[{\"role\": \"user\", \"text\": \"x\"}]", NULL, NULL, NULL, &reply),
              ATTUNE_ERR_INVALID_ARGUMENT, "messages[0].text: unknown key");
  CHECK_ERROR(attune_chat(a, kHello, NULL, NULL, NULL, NULL), ATTUNE_ERR_INVALID_ARGUMENT, "reply_json is null");
  CHECK(reply == NULL);
  CHECK_ERROR(attune_set_device_state(a, "{\"battery_percent\": \"full\"}"), ATTUNE_ERR_INVALID_ARGUMENT,
              "state.battery_percent");
  CHECK_ERROR(attune_set_device_state(a, "{\"local_hour\": 24}"), ATTUNE_ERR_INVALID_ARGUMENT, "state.local_hour");
  /* Training options out of range: the error names the field. */
  static const struct {
    const char* options;
    const char* field;
  } kBadTraining[] = {
      {"{\"max_steps\": -1}", "training.max_steps must be >= 1, not -1"},
      {"{\"rank\": 2000}", "training.rank must be in 1..1024, not 2000"},
      {"{\"learning_rate\": 2}", "training.learning_rate must be in (0, 1), not 2"},
      {"{\"max_seq_len\": 4}", "training.max_seq_len must be >= 8"},
      {"{\"base_products\": \"fp16\"}", "training.base_products"},
      {"{\"threads\": -1}", "training.threads"},
      {"{\"null_space_energy\": 1}", "training.null_space_energy"},
      {"{\"contrast_anchors\": -1}", "training.contrast_anchors"},
      {"{\"scope\": 1}", "training.scope"},
      {"{\"neftune_alpha\": -5}", "training.neftune_alpha"},
      {"{\"question_dropout_copies\": 17}", "training.question_dropout_copies"},
      {"{\"question_dropout_p\": 0}", "training.question_dropout_p"},
      {"{\"question_dropout_weight\": -1}", "training.question_dropout_weight"},
      {"{\"question_dropout_min_words\": 2}", "training.question_dropout_min_words"},
  };
  for (size_t i = 0; i < sizeof kBadTraining / sizeof kBadTraining[0]; ++i) {
    CHECK_ERROR(attune_train_now(a, kBadTraining[i].options, NULL), ATTUNE_ERR_INVALID_ARGUMENT, kBadTraining[i].field);
  }
  CHECK_ERROR(attune_promote(a, "v99", 0, NULL), ATTUNE_ERR_NOT_FOUND, "v99");
  CHECK_ERROR(attune_rollback(a, NULL), ATTUNE_ERR_FAILED_PRECONDITION, "");
  CHECK_ERROR(attune_forget_event(a, "e-none", NULL), ATTUNE_ERR_NOT_FOUND, "e-none");
  CHECK_ERROR(attune_forget_user(a, "", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "user_id is empty");
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

static void TestCallbackCancelReturnsCancelledWithThePartialReply(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  Stream s = {0};
  s.cancel_after = 1;
  char* reply = NULL;
  CHECK_ERROR(attune_chat(a, kHello, OnText, &s, NULL, &reply), ATTUNE_ERR_CANCELLED, "cancelled");
  CHECK(s.calls == 1);
  CHECK(reply != NULL && strstr(reply, "\"finish_reason\":\"cancelled\"") != NULL);
  attune_string_free(reply);

  /* The flag, raised while the reply streams, stops it the same way. */
  attune_cancel* cancel = NULL;
  CHECK_OK(attune_cancel_new(&cancel));
  Stream t = {0};
  t.raise_me = cancel;
  reply = NULL;
  CHECK_ERROR(attune_chat(a, kHello, OnText, &t, cancel, &reply), ATTUNE_ERR_CANCELLED, "cancel");
  CHECK(t.calls == 1);
  attune_string_free(reply);
  attune_cancel_free(cancel);
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

static void TestCallsAfterCloseAreClosedErrors(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  CHECK_OK(attune_close(a));
  char* out = NULL;
  CHECK_ERROR(attune_chat(a, kHello, NULL, NULL, NULL, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_get_status(a, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_record_feedback(a, "{}", NULL, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_train_now(a, NULL, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_export(a, "", "bundle", "/tmp/x", &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_import(a, "/tmp/x", 0, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_sync(a, "/tmp/x", &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_device_key(a, &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_trust_device(a, "k", &out), ATTUNE_ERR_CLOSED, "closed");
  CHECK_ERROR(attune_close(a), ATTUNE_ERR_CLOSED, "already closed");
  CHECK(out == NULL);
  /* Closing released the data directory: it opens again. */
  char options[2048];
  TinyOptions(dir.path, options, sizeof options);
  attune_assistant* b = NULL;
  CHECK_OK(attune_open(options, &b));
  CHECK(b != a);
  /* While open, a second handle on the same directory is refused. */
  attune_assistant* c = NULL;
  CHECK_ERROR(attune_open(options, &c), ATTUNE_ERR_UNAVAILABLE, "");
  CHECK_OK(attune_close(b));
  RemoveTempDir(&dir);
}

static void TestCloseFromInsideTheCallbackFinishesTheReply(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  Stream s = {0};
  s.close_me = a;
  char* reply = NULL;
  CHECK_OK(attune_chat(a, kHello, OnText, &s, NULL, &reply));
  CHECK(reply != NULL && strstr(reply, "\"finish_reason\":\"length\"") != NULL);
  attune_string_free(reply);
  CHECK_ERROR(attune_get_status(a, &reply), ATTUNE_ERR_CLOSED, "closed");
  RemoveTempDir(&dir);
}

/* A chat that, once it streams, waits until the main thread has closed the
 * handle: the close must not free the assistant under the running reply. */
typedef struct {
  attune_assistant* a;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int streaming, closed, code;
  char* reply;
} CloseRace;

static int WaitForClose(const char* text, size_t size, void* user_data) {
  (void)text, (void)size;
  CloseRace* r = (CloseRace*)user_data;
  pthread_mutex_lock(&r->mu);
  r->streaming = 1;
  pthread_cond_broadcast(&r->cv);
  while (!r->closed) pthread_cond_wait(&r->cv, &r->mu);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

static void* ChatUntilClosed(void* arg) {
  CloseRace* r = (CloseRace*)arg;
  r->code = attune_chat(r->a, kHello, WaitForClose, r, NULL, &r->reply);
  return NULL;
}

static void TestCloseWhileAnotherThreadChatsLetsTheReplyFinish(void) {
  TempDir dir;
  CloseRace r = {0};
  r.a = OpenTiny(&dir);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  pthread_t t;
  pthread_create(&t, NULL, ChatUntilClosed, &r);
  pthread_mutex_lock(&r.mu);
  while (!r.streaming) pthread_cond_wait(&r.cv, &r.mu);
  pthread_mutex_unlock(&r.mu);
  CHECK_OK(attune_close(r.a));
  char* status = NULL;
  CHECK_ERROR(attune_get_status(r.a, &status), ATTUNE_ERR_CLOSED, "closed");
  pthread_mutex_lock(&r.mu);
  r.closed = 1;
  pthread_cond_broadcast(&r.cv);
  pthread_mutex_unlock(&r.mu);
  pthread_join(t, NULL);
  CHECK(r.code == ATTUNE_OK);
  CHECK(r.reply != NULL && strstr(r.reply, "\"finish_reason\":\"length\"") != NULL);
  attune_string_free(r.reply);
  pthread_cond_destroy(&r.cv);
  pthread_mutex_destroy(&r.mu);
  RemoveTempDir(&dir);
}

typedef struct {
  attune_assistant* a;
  int ok;
} ChatThread;

static void* ChatOnThread(void* arg) {
  ChatThread* t = (ChatThread*)arg;
  char* reply = NULL;
  t->ok = attune_chat(t->a, kHello, NULL, NULL, NULL, &reply) == ATTUNE_OK && reply != NULL;
  attune_string_free(reply);
  return NULL;
}

static void TestChatsFromSeveralThreads(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  pthread_t threads[3];
  ChatThread args[3];
  for (int i = 0; i < 3; ++i) {
    args[i].a = a;
    args[i].ok = 0;
    pthread_create(&threads[i], NULL, ChatOnThread, &args[i]);
  }
  char* status = NULL;
  CHECK_OK(attune_get_status(a, &status));
  attune_string_free(status);
  for (int i = 0; i < 3; ++i) {
    pthread_join(threads[i], NULL);
    CHECK(args[i].ok);
  }
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

/* With the background trainer running (and polling often), close stops and
 * joins it; pushed device state reaches the window check. */
static void TestCloseStopsTheBackgroundTrainer(void) {
  TempDir dir;
  char options[2048];
  MakeTempDir(&dir);
  snprintf(options, sizeof options,
           "{\"data_dir\": \"%s\", \"model_path\": \"%s/models/tiny_llama.gguf\", "
           "\"chat_template\": \"chatml\", \"background_training\": true, \"poll_interval_ms\": 5}",
           dir.path, g_fixtures);
  attune_assistant* a = NULL;
  CHECK_OK(attune_open(options, &a));
  CHECK_OK(attune_set_device_state(a, "{\"external_power\": false}"));
  char* status = NULL;
  CHECK_OK(attune_get_status(a, &status));
  CHECK(status != NULL && strstr(status, "\"window_open\":false") != NULL);
  CHECK(status != NULL && strstr(status, "\"training\":false") != NULL);
  attune_string_free(status);
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

static void TestTrainRollbackPromoteForget(void) {
  TempDir dir;
  attune_assistant* a = OpenTiny(&dir);
  const char* facts[4][2] = {{"d-1", "My dog?"}, {"d-2", "My cat?"}, {"d-3", "My city?"}, {"d-4", "My car?"}};
  for (int i = 0; i < 4; ++i) {
    char event[512];
    snprintf(event, sizeof event,
             "{\"id\": \"%s\", \"user_id\": \"u-%d\", \"context\": [{\"role\": \"user\", \"content\": \"%s\"}], "
             "\"demonstration\": {\"text\": \"Pixel.\"}}",
             facts[i][0], i % 2, facts[i][1]);
    CHECK_OK(attune_record_feedback(a, event, NULL, NULL));
  }
  CHECK_OK(attune_set_device_state(a, "{\"external_power\": false, \"battery_percent\": 20}"));
  char* status = NULL;
  CHECK_OK(attune_get_status(a, &status));
  CHECK(status != NULL && strstr(status, "\"window_open\":false") != NULL);
  CHECK(status != NULL && strstr(status, "\"new_events\":4") != NULL);
  attune_string_free(status);

  char* result = NULL;
  CHECK_OK(attune_train_now(a, "{\"max_steps\": 2}", &result));
  CHECK(result != NULL && strstr(result, "\"trained\":true") != NULL);
  CHECK(result != NULL && strstr(result, "\"promoted\":true") != NULL);
  CHECK(result != NULL && strstr(result, "\"steps\":2") != NULL);
  char version[128] = {0};
  const char* p = result ? strstr(result, "\"version\":\"") : NULL;
  CHECK(p != NULL);
  if (p) sscanf(p + strlen("\"version\":\""), "%127[^\"]", version);
  attune_string_free(result);

  char* reply = NULL;
  CHECK_OK(attune_chat(a, kHello, NULL, NULL, NULL, &reply));
  CHECK(reply != NULL && strstr(reply, "\"adapter_label\":\"v1\"") != NULL);
  attune_string_free(reply);

  char* v = NULL;
  CHECK_OK(attune_rollback(a, &v));
  CHECK(v != NULL && strcmp(v, "") == 0); /* back to the base model */
  attune_string_free(v);
  CHECK_OK(attune_promote(a, "v1", 1, &v));
  CHECK(v != NULL && strcmp(v, version) == 0);
  attune_string_free(v);

  char* report = NULL;
  CHECK_OK(attune_forget_user(a, "u-1", &report));
  CHECK(report != NULL && strstr(report, "\"events_erased\":2") != NULL);
  CHECK(report != NULL && strstr(report, version) != NULL); /* v1 was trained on them */
  attune_string_free(report);
  CHECK_OK(attune_forget_event(a, "d-1", &report));
  CHECK(report != NULL && strstr(report, "\"events_erased\":1") != NULL);
  attune_string_free(report);
  CHECK_OK(attune_close(a));
  RemoveTempDir(&dir);
}

/* Copies `from` to `to`, flipping one byte in the middle when `flip`. */
static int CopyFile(const char* from, const char* to, int flip) {
  FILE* in = fopen(from, "rb");
  if (!in) return 0;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, in);
  fclose(in);
  if (n == 0 || n == sizeof buf) return 0;
  if (flip) buf[n / 2] ^= 0x40;
  FILE* out = fopen(to, "wb");
  if (!out) return 0;
  int ok = fwrite(buf, 1, n, out) == n;
  fclose(out);
  return ok;
}

/* Trains v1 on device A, exports it in every format and moves it to device
 * B (a bundle, once B trusts A's key; a PEFT directory) and to device C
 * through a sync folder. Untrusted and tampered bundles are refused. */
static void TestExportImportAndSyncBetweenDevices(void) {
  TempDir da, db, dc, shared;
  attune_assistant* a = OpenTiny(&da);
  attune_assistant* b = OpenTiny(&db);
  attune_assistant* c = OpenTiny(&dc);
  MakeTempDir(&shared);
  char* out = NULL;
  CHECK_ERROR(attune_export(a, "", "bundle", "/tmp/never-written", &out), ATTUNE_ERR_FAILED_PRECONDITION,
              "no adapter is active");
  for (int i = 0; i < 4; ++i) {
    char event[512];
    snprintf(event, sizeof event,
             "{\"id\": \"s-%d\", \"user_id\": \"u\", \"context\": [{\"role\": \"user\", \"content\": \"Fact %d?\"}], "
             "\"demonstration\": {\"text\": \"Answer %d.\"}}",
             i, i, i);
    CHECK_OK(attune_record_feedback(a, event, NULL, NULL));
  }
  CHECK_OK(attune_train_now(a, "{\"max_steps\": 2}", &out));
  char version[128] = {0};
  const char* p = out ? strstr(out, "\"version\":\"") : NULL;
  CHECK(p != NULL);
  if (p) sscanf(p + strlen("\"version\":\""), "%127[^\"]", version);
  attune_string_free(out);

  char bundle[512], tampered[512], peft[512], gguf[512];
  snprintf(bundle, sizeof bundle, "%s/v1.bundle", da.path);
  snprintf(tampered, sizeof tampered, "%s/tampered.bundle", da.path);
  snprintf(peft, sizeof peft, "%s/v1-peft", da.path);
  snprintf(gguf, sizeof gguf, "%s/v1-lora.gguf", da.path);
  CHECK_OK(attune_export(a, "", "bundle", bundle, &out)); /* "" = the active version */
  CHECK(out != NULL && strstr(out, version) != NULL && strstr(out, "\"format\":\"bundle\"") != NULL);
  attune_string_free(out);
  CHECK_OK(attune_export(a, "v1", "peft", peft, NULL));
  CHECK_OK(attune_export(a, "v1", "gguf", gguf, NULL));
  CHECK(access(gguf, R_OK) == 0);
  char peft_config[600];
  snprintf(peft_config, sizeof peft_config, "%s/adapter_config.json", peft);
  CHECK(access(peft_config, R_OK) == 0);
  CHECK_ERROR(attune_export(a, "v9", "peft", "/tmp/never-written", NULL), ATTUNE_ERR_NOT_FOUND, "v9");
  CHECK_ERROR(attune_export(a, "v1", "onnx", "/tmp/never-written", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "onnx");
  CHECK_ERROR(attune_export(a, "v1", "peft", "", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "path is empty");
  CHECK(access("/tmp/never-written", F_OK) != 0);

  /* B does not know A yet: the bundle is refused, nothing is added. */
  CHECK_ERROR(attune_import(b, bundle, 1, &out), ATTUNE_ERR_FAILED_PRECONDITION, "not trusted");
  CHECK(out == NULL);
  char* key = NULL;
  CHECK_OK(attune_device_key(a, &key));
  CHECK(key != NULL && strncmp(key, "attune-device-key v1 ", 21) == 0);
  char* id = NULL;
  CHECK_OK(attune_trust_device(b, key, &id));
  CHECK(id != NULL && key != NULL && strstr(key, id) != NULL);
  attune_string_free(id);
  CHECK_ERROR(attune_trust_device(b, "attune-device-key v1 nonsense", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "");
  char* own = NULL;
  CHECK_OK(attune_device_key(b, &own));
  CHECK_ERROR(attune_trust_device(b, own, NULL), ATTUNE_ERR_FAILED_PRECONDITION, "");
  attune_string_free(own);

  /* A tampered copy fails its signature; the real one imports, promoted. */
  CHECK(CopyFile(bundle, tampered, 1));
  CHECK_ERROR(attune_import(b, tampered, 1, &out), ATTUNE_ERR_DATA_LOSS, "tampered.bundle");
  CHECK_OK(attune_import(b, bundle, 1, &out));
  CHECK(out != NULL && strstr(out, version) != NULL && strstr(out, "\"promoted\":true") != NULL);
  CHECK(out != NULL && strstr(out, "\"format\":\"bundle\"") != NULL);
  attune_string_free(out);
  char* reply = NULL;
  CHECK_OK(attune_chat(b, kHello, NULL, NULL, NULL, &reply));
  CHECK(reply != NULL && strstr(reply, version) != NULL);
  attune_string_free(reply);
  /* A PEFT directory needs no key; it arrives as a candidate. */
  CHECK_OK(attune_import(b, peft, 0, &out));
  CHECK(out != NULL && strstr(out, "\"format\":\"peft\"") != NULL && strstr(out, "\"promoted\":false") != NULL);
  attune_string_free(out);
  CHECK_ERROR(attune_import(b, "/nonexistent/adapter", 0, NULL), ATTUNE_ERR_NOT_FOUND, "/nonexistent/adapter");

  /* Sync: A publishes v1 into the shared folder, C (trusting A) picks it up. */
  CHECK_OK(attune_sync(a, shared.path, &out));
  CHECK(out != NULL && strstr(out, version) != NULL);
  attune_string_free(out);
  CHECK_OK(attune_trust_device(c, key, NULL));
  CHECK_OK(attune_sync(c, shared.path, &out));
  CHECK(out != NULL && strstr(out, "\"imported\":[\"") != NULL && strstr(out, "\"refused\":[]") != NULL);
  attune_string_free(out);
  CHECK_ERROR(attune_sync(c, "", NULL), ATTUNE_ERR_INVALID_ARGUMENT, "dir is empty");
  attune_string_free(key);

  CHECK_OK(attune_close(a));
  CHECK_OK(attune_close(b));
  CHECK_OK(attune_close(c));
  RemoveTempDir(&da);
  RemoveTempDir(&db);
  RemoveTempDir(&dc);
  RemoveTempDir(&shared);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
    return 2;
  }
  g_fixtures = argv[1];
  TestVersion();
  TestNullHandleIsAnErrorEverywhere();
  TestBadOptionsNameWhatIsWrong();
  TestAnIntegerAboveInt64MaxIsReportedAsWrittenNotWrapped();
  TestMissingModelNamesTheModel();
  TestChatStreamsAndRecordsFeedbackByResponseId();
  TestBadChatInputs();
  TestCallbackCancelReturnsCancelledWithThePartialReply();
  TestCallsAfterCloseAreClosedErrors();
  TestCloseFromInsideTheCallbackFinishesTheReply();
  TestCloseWhileAnotherThreadChatsLetsTheReplyFinish();
  TestChatsFromSeveralThreads();
  TestCloseStopsTheBackgroundTrainer();
  TestTrainRollbackPromoteForget();
  TestExportImportAndSyncBetweenDevices();
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("all C ABI checks passed\n");
  return 0;
}
