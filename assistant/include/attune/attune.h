/* attune/attune.h: the C ABI of Attune, for apps in any language.
 *
 * One opaque handle, attune_assistant, wraps the same Assistant object that
 * C++ apps embed (attune/assistant.h): chat with the active adapter, record
 * feedback, push device state, read status, train now, roll back, promote,
 * forget. Structured inputs and outputs are UTF-8 JSON strings, so the ABI
 * does not change when an option or a status field is added. docs/embedding.md
 * describes every JSON shape and shows bindings from Python, Swift and Kotlin.
 *
 * Conventions (every function):
 *   - Returns an attune_error: ATTUNE_OK (0) or a code saying what the caller
 *     should do. On an error, attune_last_error() gives a message naming what
 *     was wrong and where; the assistant's state is unchanged unless the
 *     function says otherwise.
 *   - Input strings are NUL-terminated UTF-8, at most ATTUNE_MAX_INPUT_BYTES.
 *     A null, over-long or ill-formed one is ATTUNE_ERR_INVALID_ARGUMENT.
 *   - Output strings (char** out parameters) are allocated by the library and
 *     owned by the caller, who frees each with attune_string_free(). On an
 *     error the output is set to NULL (except attune_chat on
 *     ATTUNE_ERR_CANCELLED, which hands back the partial reply).
 *   - No C++ exception crosses this interface.
 *   - Handles are never reused within a process: after attune_close, every
 *     call with the closed handle returns ATTUNE_ERR_CLOSED, never a crash.
 *
 * Thread safety is stated per function. "Any thread" means the function may
 * run concurrently with any other function of this header on the same handle.
 *
 * ABI stability (ATTUNE_ABI_VERSION is the major version; the library's
 * soname is libattune.so.<ATTUNE_ABI_VERSION> and its symbols carry the
 * version node ATTUNE_<ATTUNE_ABI_VERSION>):
 *   Within a major version the library may
 *     - add functions (new symbols), error codes (apps must treat an unknown
 *       code like ATTUNE_ERR_INTERNAL), JSON keys in outputs (apps must ignore
 *       keys they do not know), optional JSON keys in inputs;
 *     - change error message texts.
 *   It may not
 *     - remove or rename a function, change its parameters, return type or
 *       documented ownership, or change the value of a constant;
 *     - remove or rename a JSON key, change its type or meaning, or make an
 *       optional input key required.
 *   Any of those bumps ATTUNE_ABI_VERSION (and the soname). The exported
 *   symbol list is pinned by a test (tests/capi/exported_symbols.txt).
 *   Functions added within a major version carry a minor version node
 *   (ATTUNE_1.1: attune_export, attune_import, attune_sync,
 *   attune_device_key, attune_trust_device), so a program built against them
 *   fails to load, with a clear message, on an older libattune.so.1.
 */
#ifndef ATTUNE_ATTUNE_H_
#define ATTUNE_ATTUNE_H_

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define ATTUNE_API __attribute__((visibility("default")))
#else
#define ATTUNE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The major ABI version this header describes. Compare it with
 * attune_abi_version() at startup to catch a mismatched library. */
#define ATTUNE_ABI_VERSION 1

/* Longest input string accepted, in bytes (16 MiB). */
#define ATTUNE_MAX_INPUT_BYTES (16u << 20)

/* Error codes. Values are fixed forever (see the stability rules). */
typedef enum attune_error {
  ATTUNE_OK = 0,
  ATTUNE_ERR_INVALID_ARGUMENT = 1,    /* fix the input: null, bad UTF-8, bad JSON */
  ATTUNE_ERR_NOT_FOUND = 2,           /* unknown response id, event or version */
  ATTUNE_ERR_FAILED_PRECONDITION = 3, /* e.g. the gate rejected a promotion */
  ATTUNE_ERR_DATA_LOSS = 4,           /* corrupt file in the data directory */
  ATTUNE_ERR_UNAVAILABLE = 5,         /* retry later, e.g. data directory in use */
  ATTUNE_ERR_ABORTED = 6,             /* lost a race; retry the call */
  ATTUNE_ERR_OUT_OF_RANGE = 7,
  ATTUNE_ERR_IO = 8,       /* the file system failed */
  ATTUNE_ERR_INTERNAL = 9, /* a bug; the message says where */
  ATTUNE_ERR_ALREADY_EXISTS = 10,
  ATTUNE_ERR_UNSUPPORTED = 11, /* not available in this build */
  ATTUNE_ERR_CANCELLED = 12,   /* the callback or the cancel flag stopped it */
  ATTUNE_ERR_CLOSED = 13       /* the handle was closed (or never opened) */
} attune_error;

typedef struct attune_assistant attune_assistant;
typedef struct attune_cancel attune_cancel;

/* ---- Library ---------------------------------------------------------- */

/* The library's version, "MAJOR.MINOR.PATCH". Static storage.
 * Thread safety: any thread. */
ATTUNE_API const char* attune_version(void);

/* The library's ATTUNE_ABI_VERSION. Thread safety: any thread. */
ATTUNE_API int attune_abi_version(void);

/* The message of the last failed call made on the calling thread ("" when
 * the last call succeeded). Valid until the next call on this thread.
 * Thread safety: per thread (each thread has its own). */
ATTUNE_API const char* attune_last_error(void);

/* "OK", "INVALID_ARGUMENT", ... for a code; "UNKNOWN" for any other value.
 * Static storage. Thread safety: any thread. */
ATTUNE_API const char* attune_error_name(int code);

/* Frees a string returned by this library. NULL is ignored.
 * Thread safety: any thread. */
ATTUNE_API void attune_string_free(char* s);

/* ---- Open and close --------------------------------------------------- */

/* Opens the data directory (created when missing) and loads the model.
 * `options_json`: a JSON object, "{}" for all defaults. Keys (all optional):
 *   data_dir, model_path, chat_template ("chatml" | "llama3"),
 *   background_training (bool), serving_first (bool), poll_interval_ms,
 *   remembered_responses,
 *   generation {max_tokens, temperature, top_k, top_p, repetition_penalty,
 *   seed, stop [strings]}, training {...}, window {...}, gate {...},
 *   health {...} (docs/embedding.md lists their keys). An unknown key or a
 *   wrong type is ATTUNE_ERR_INVALID_ARGUMENT naming it.
 * On success *out is a new handle. Errors name the part that failed (model,
 * feedback store, adapter registry); a data directory already open in this
 * or another process is ATTUNE_ERR_UNAVAILABLE.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_open(const char* options_json, attune_assistant** out);

/* Closes the handle: stops background training (writing a checkpoint),
 * flushes the feedback store and frees the model. Calls already running on
 * other threads finish first; the handle is invalid for new calls at once
 * and the assistant is destroyed when the last running call returns.
 * Closing twice is ATTUNE_ERR_CLOSED. Thread safety: any thread, including
 * from inside an attune_chat callback. */
ATTUNE_API attune_error attune_close(attune_assistant* assistant);

/* ---- Chat ------------------------------------------------------------- */

/* A cancel flag another thread can raise while attune_chat runs.
 * attune_cancel_new: thread safety any thread. attune_cancel_set: any thread,
 * any number of times. attune_cancel_free: once, when no attune_chat uses
 * the flag any more (NULL is ignored). */
ATTUNE_API attune_error attune_cancel_new(attune_cancel** out);
ATTUNE_API void attune_cancel_set(attune_cancel* cancel);
ATTUNE_API void attune_cancel_free(attune_cancel* cancel);

/* Receives the reply as it is produced: `size` bytes at `text`, followed by
 * a NUL, always whole UTF-8 characters; valid only during the call. The
 * concatenated pieces are the reply's "text". Return 0 to go on,
 * anything else to cancel the reply. Runs on the thread that called
 * attune_chat; it may call any function of this header (attune_close too:
 * the reply still completes). It must not unwind (longjmp, C++ throw) out. */
typedef int (*attune_text_callback)(const char* text, size_t size, void* user_data);

/* Generates the assistant's reply to `messages_json`, a JSON array of
 * {"role": "system"|"user"|"assistant", "content": "..."}, with the active
 * adapter (pinned for the whole reply). `on_text` (may be NULL) streams the
 * reply; `cancel` (may be NULL) is checked each time text is produced.
 * On success *reply_json is {"text", "response_id", "adapter_version",
 * "adapter_label", "finish_reason"}; keep response_id to attach feedback.
 * When the callback returns non-zero or the flag is raised:
 * ATTUNE_ERR_CANCELLED, and *reply_json still holds the partial reply
 * (finish_reason "cancelled"), to be freed by the caller.
 * Thread safety: any thread; many chats may run at once. */
ATTUNE_API attune_error attune_chat(attune_assistant* assistant, const char* messages_json,
                                    attune_text_callback on_text, void* user_data, attune_cancel* cancel,
                                    char** reply_json);

/* ---- Feedback ----------------------------------------------------------- */

/* Stores one feedback event, `event_json` in the FeedbackEvent JSON form
 * (docs/feedback.md). With a non-NULL `response_id` from attune_chat, the
 * event's missing context, response, adapter version and id are taken from
 * that reply; an unknown id is ATTUNE_ERR_NOT_FOUND. Validation errors name
 * the field. On success *event_id (may be NULL if not wanted) is the stored
 * event's id. A thumbs-down streak on a new adapter may roll it back.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_record_feedback(attune_assistant* assistant, const char* event_json,
                                               const char* response_id, char** event_id);

/* Erases every stored event of a user (an unknown user erases nothing), or
 * one event by id (unknown: ATTUNE_ERR_NOT_FOUND), and what adapters learned
 * from it: every version built from the erased data is erased (the active one
 * rolled back first to the newest version that never saw it, or the base),
 * the training checkpoint is discarded and a retraining window on the
 * remaining feedback is scheduled. *report_json (may be NULL) is
 * {"events_erased", "affected_adapter_versions": [...] (trained on the
 * erased events), "retired_versions": [...] (erased), "rolled_back",
 * "active_version", "retrain_scheduled"}.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_forget_user(attune_assistant* assistant, const char* user_id, char** report_json);
ATTUNE_API attune_error attune_forget_event(attune_assistant* assistant, const char* event_id, char** report_json);

/* ---- Device state, status, training, versions ---------------------------- */

/* Pushes the device's state, {"external_power": bool, "battery_percent": n,
 * "idle_minutes": n, "temperature_c": n, "local_hour": 0..23}; a key left
 * out is unknown. From the first call on, the pushed state replaces the
 * library's own Linux readings. Thread safety: any thread. */
ATTUNE_API attune_error attune_set_device_state(attune_assistant* assistant, const char* state_json);

/* *status_json: {"window_open", "window_closed_because": [...], "training",
 * "progress": {"step", "max_steps", "loss", "tokens_per_second",
 * "eta_seconds"}, "active_version", "active_label", "stored_events",
 * "new_events", "last_run": null | <train result>}.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_get_status(attune_assistant* assistant, char** status_json);

/* Runs one training window now on the calling thread, whatever the window
 * policy says (waits while the background trainer runs one). `options_json`
 * (may be NULL: the training options given to attune_open) is a "training"
 * object as in attune_open. *result_json (may be NULL) is {"trained",
 * "skipped_reason", "completed", "version", "label", "promoted",
 * "gate_summary", "report": {...}}. A promoted adapter serves the next chat.
 * Thread safety: any thread (one window runs at a time). */
ATTUNE_API attune_error attune_train_now(attune_assistant* assistant, const char* options_json, char** result_json);

/* Rolls back to the previous adapter version and serves it. *version (may
 * be NULL) is the now active version ("" = the base model). Nothing to roll
 * back to: ATTUNE_ERR_FAILED_PRECONDITION. Thread safety: any thread. */
ATTUNE_API attune_error attune_rollback(attune_assistant* assistant, char** version);

/* Promotes a candidate ("v3", a full id or a unique prefix) through the gate,
 * or past it with force != 0 (recorded in the history), and serves it. The
 * gate's refusal is ATTUNE_ERR_FAILED_PRECONDITION naming the failed rules.
 * *promoted (may be NULL) is the promoted full id. Thread safety: any thread. */
ATTUNE_API attune_error attune_promote(attune_assistant* assistant, const char* version, int force, char** promoted);

/* ---- Export, import and sync across the user's devices (since ABI 1.1) --- */

/* Writes adapter `version` ("" = the active one, "v3", a full id or a unique
 * prefix) to `path` as `format`: "peft" (a directory that PEFT's
 * PeftModel.from_pretrained reads), "gguf" (a GGUF-LoRA file for llama.cpp's
 * --lora) or "bundle" (signed with this device's key, for attune_import or
 * attune_sync on the user's other devices). Nothing is left at `path` on
 * failure. *result_json (may be NULL) is {"version", "label", "format",
 * "path"}. Unknown version: ATTUNE_ERR_NOT_FOUND; no active adapter with
 * version "": ATTUNE_ERR_FAILED_PRECONDITION. Thread safety: any thread. */
ATTUNE_API attune_error attune_export(attune_assistant* assistant, const char* version, const char* format,
                                      const char* path, char** result_json);

/* Adds the adapter at `path` (a PEFT directory, a GGUF-LoRA file or a
 * bundle; the format is detected) as a candidate version. A bundle must be
 * signed by this device or one trusted with attune_trust_device (else
 * ATTUNE_ERR_FAILED_PRECONDITION naming the signer) and must verify (else
 * ATTUNE_ERR_DATA_LOSS); an adapter for another base model is
 * ATTUNE_ERR_FAILED_PRECONDITION. With force_promote != 0 it is promoted past
 * the gate (recorded in the history) and serves the next chat; otherwise
 * promote it with attune_promote. *result_json (may be NULL) is {"version",
 * "label", "format", "signer_device_id", "promoted"}.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_import(attune_assistant* assistant, const char* path, int force_promote,
                                      char** result_json);

/* Exchanges adapters with the user's other devices through the folder `dir`
 * (a synced folder, a USB stick): publishes this device's promoted versions
 * as signed bundles, imports trusted devices' bundles as candidates, applies
 * their erasure notices. Files that do not verify are listed in "refused"
 * and looked at again next time. *report_json (may be NULL) is
 * {"device_id", "exported": [...], "imported": [...], "merged": [...],
 * "erased": [...], "refused": ["path: reason", ...], "active_version"}.
 * Another sync of the same folder in progress: ATTUNE_ERR_UNAVAILABLE.
 * Thread safety: any thread. */
ATTUNE_API attune_error attune_sync(attune_assistant* assistant, const char* dir, char** report_json);

/* *key_line is this device's public key line ("attune-device-key v1 <id>
 * <hex>"; the key pair is created on first use under the data directory),
 * to be trusted on the user's other devices. Thread safety: any thread. */
ATTUNE_API attune_error attune_device_key(attune_assistant* assistant, char** key_line);

/* Trusts the device of a public key line (from attune_device_key on that
 * device); its bundles are then accepted. *device_id (may be NULL) is its id.
 * A malformed line: ATTUNE_ERR_INVALID_ARGUMENT; a revoked key or this
 * device's own: ATTUNE_ERR_FAILED_PRECONDITION. Thread safety: any thread. */
ATTUNE_API attune_error attune_trust_device(attune_assistant* assistant, const char* key_line, char** device_id);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTUNE_ATTUNE_H_ */
