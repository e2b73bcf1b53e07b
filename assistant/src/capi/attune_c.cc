// The extern "C" entry points of attune/attune.h. Each one checks its
// inputs, finds the open assistant, calls the C++ Assistant and turns the result
// into a code, a thread-local message and caller-owned JSON.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "attune/attune.h"
#include "attune/feedback/codec.h"
#include "attune/feedback/validate.h"
#include "errors.h"
#include "handles.h"
#include "json_options.h"
#include "json_reader.h"
#include "json_results.h"

struct attune_cancel {
  std::atomic<bool> raised{false};
};

namespace attune::capi {
namespace {

#ifndef ATTUNE_VERSION_STRING
#error "ATTUNE_VERSION_STRING must be defined by the build"
#endif

// Null, over-long and ill-formed strings fail here, before any parsing.
attune_error CheckString(const char* s, const char* fn, const char* what, std::string& out) {
  if (s == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + what + " is null");
  size_t n = strnlen(s, size_t(ATTUNE_MAX_INPUT_BYTES) + 1);
  if (n > ATTUNE_MAX_INPUT_BYTES) {
    return Fail(ATTUNE_ERR_INVALID_ARGUMENT,
                std::string(fn) + ": " + what + " is longer than " + std::to_string(ATTUNE_MAX_INPUT_BYTES) + " bytes");
  }
  out.assign(s, n);
  if (!feedback::IsValidUtf8(out)) {
    return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + what + " is not well-formed UTF-8");
  }
  return ATTUNE_OK;
}

attune_error FindOpen(attune_assistant* handle, const char* fn, std::shared_ptr<OpenAssistant>& out) {
  if (handle == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": the assistant handle is null");
  out = Find(handle);
  if (!out) return Fail(ATTUNE_ERR_CLOSED, std::string(fn) + ": the assistant handle is closed (or was never opened)");
  return ATTUNE_OK;
}

// Hands `text` to the caller as a malloc'd string (freed by attune_string_free).
attune_error Give(const std::string& text, char** out, const char* fn) {
  if (out == nullptr) return Succeed();
  char* p = static_cast<char*>(std::malloc(text.size() + 1));
  if (p == nullptr) return Fail(ATTUNE_ERR_INTERNAL, std::string(fn) + ": out of memory");
  std::memcpy(p, text.data(), text.size() + 1);
  *out = p;
  return Succeed();
}

// Runs `body`, turning any escaping exception into ATTUNE_ERR_INTERNAL.
template <typename F>
attune_error Guard(const char* fn, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    return Fail(ATTUNE_ERR_INTERNAL, std::string(fn) + ": unexpected error: " + e.what());
  } catch (...) {
    return Fail(ATTUNE_ERR_INTERNAL, std::string(fn) + ": unexpected error");
  }
}

#define CAPI_RETURN_IF_ERROR(expr)  \
  do {                              \
    attune_error _e = (expr);       \
    if (_e != ATTUNE_OK) return _e; \
  } while (0)

void Clear(char** out) {
  if (out) *out = nullptr;
}

template <typename ForgetFn>
attune_error Forget(attune_assistant* handle, const char* key, const char* fn, const char* what, char** report_json,
                    ForgetFn forget) {
  return Guard(fn, [&]() -> attune_error {
    Clear(report_json);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string k;
    CAPI_RETURN_IF_ERROR(CheckString(key, fn, what, k));
    if (k.empty()) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + what + " is empty");
    auto report = forget(*s->assistant, k);
    if (!report.ok()) return FailWith(report.status(), fn);
    return Give(Dump(ForgetToJson(*report)), report_json, fn);
  });
}

}  // namespace
}  // namespace attune::capi

using namespace attune;
using namespace attune::capi;

extern "C" {

const char* attune_version(void) { return ATTUNE_VERSION_STRING; }

int attune_abi_version(void) { return ATTUNE_ABI_VERSION; }

const char* attune_last_error(void) { return LastError(); }

const char* attune_error_name(int code) { return ErrorName(code); }

void attune_string_free(char* s) { std::free(s); }

attune_error attune_open(const char* options_json, attune_assistant** out) {
  return Guard("attune_open", [&]() -> attune_error {
    if (out == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, "attune_open: out is null");
    *out = nullptr;
    std::string text;
    CAPI_RETURN_IF_ERROR(CheckString(options_json, "attune_open", "options_json", text));
    auto options = ParseAssistantOptions(text);
    if (!options.ok()) return FailWith(options.status(), "attune_open");
    auto assistant = Assistant::Open(*options);
    if (!assistant.ok()) return FailWith(assistant.status(), "attune_open");
    auto opened = std::make_shared<OpenAssistant>();
    opened->assistant = std::move(*assistant);
    opened->training = options->training;
    *out = Register(std::move(opened));
    return Succeed();
  });
}

attune_error attune_close(attune_assistant* handle) {
  return Guard("attune_close", [&]() -> attune_error {
    if (handle == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, "attune_close: the assistant handle is null");
    std::shared_ptr<OpenAssistant> opened = Unregister(handle);
    if (!opened)
      return Fail(ATTUNE_ERR_CLOSED, "attune_close: the assistant handle is already closed (or was never opened)");
    // Destroyed here unless a call on another thread still holds it; then
    // that call destroys it when it returns.
    opened.reset();
    return Succeed();
  });
}

attune_error attune_cancel_new(attune_cancel** out) {
  return Guard("attune_cancel_new", [&]() -> attune_error {
    if (out == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, "attune_cancel_new: out is null");
    *out = new attune_cancel;
    return Succeed();
  });
}

void attune_cancel_set(attune_cancel* cancel) {
  if (cancel) cancel->raised.store(true);
}

void attune_cancel_free(attune_cancel* cancel) { delete cancel; }

attune_error attune_chat(attune_assistant* handle, const char* messages_json, attune_text_callback on_text,
                         void* user_data, attune_cancel* cancel, char** reply_json) {
  const char* fn = "attune_chat";
  return Guard(fn, [&]() -> attune_error {
    if (reply_json == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, "attune_chat: reply_json is null");
    *reply_json = nullptr;
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string text;
    CAPI_RETURN_IF_ERROR(CheckString(messages_json, fn, "messages_json", text));
    auto messages = ParseMessages(text);
    if (!messages.ok()) return FailWith(messages.status(), fn);
    auto stream = [&](std::string_view piece) {
      if (cancel && cancel->raised.load()) return false;
      // A copy, so the callback gets a NUL-terminated string.
      std::string chunk(piece);
      if (on_text && on_text(chunk.c_str(), chunk.size(), user_data) != 0) return false;
      return !(cancel && cancel->raised.load());
    };
    auto reply = s->assistant->Chat(*messages, stream);
    if (!reply.ok()) return FailWith(reply.status(), fn);
    CAPI_RETURN_IF_ERROR(Give(Dump(ReplyToJson(*reply)), reply_json, fn));
    if (reply->finish_reason == "cancelled") {
      return Fail(ATTUNE_ERR_CANCELLED, "attune_chat: cancelled by the callback or the cancel flag");
    }
    return Succeed();
  });
}

attune_error attune_record_feedback(attune_assistant* handle, const char* event_json, const char* response_id,
                                    char** event_id) {
  const char* fn = "attune_record_feedback";
  return Guard(fn, [&]() -> attune_error {
    Clear(event_id);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string text, rid;
    CAPI_RETURN_IF_ERROR(CheckString(event_json, fn, "event_json", text));
    if (response_id) CAPI_RETURN_IF_ERROR(CheckString(response_id, fn, "response_id", rid));
    auto event = feedback::ParseEventJson(text);
    if (!event.ok()) return FailWith(event.status(), std::string(fn) + ": event_json");
    auto id = s->assistant->Record(std::move(*event), rid);
    if (!id.ok()) return FailWith(id.status(), fn);
    return Give(*id, event_id, fn);
  });
}

attune_error attune_forget_user(attune_assistant* handle, const char* user_id, char** report_json) {
  return Forget(handle, user_id, "attune_forget_user", "user_id", report_json,
                [](Assistant& a, const std::string& k) { return a.ForgetUser(k); });
}

attune_error attune_forget_event(attune_assistant* handle, const char* event_id, char** report_json) {
  return Forget(handle, event_id, "attune_forget_event", "event_id", report_json,
                [](Assistant& a, const std::string& k) { return a.ForgetEvent(k); });
}

attune_error attune_set_device_state(attune_assistant* handle, const char* state_json) {
  const char* fn = "attune_set_device_state";
  return Guard(fn, [&]() -> attune_error {
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string text;
    CAPI_RETURN_IF_ERROR(CheckString(state_json, fn, "state_json", text));
    auto state = ParseDeviceState(text);
    if (!state.ok()) return FailWith(state.status(), fn);
    s->assistant->SetDeviceState(*state);
    return Succeed();
  });
}

attune_error attune_get_status(attune_assistant* handle, char** status_json) {
  const char* fn = "attune_get_status";
  return Guard(fn, [&]() -> attune_error {
    if (status_json == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, "attune_get_status: status_json is null");
    *status_json = nullptr;
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    return Give(Dump(StatusToJson(s->assistant->GetStatus())), status_json, fn);
  });
}

attune_error attune_train_now(attune_assistant* handle, const char* options_json, char** result_json) {
  const char* fn = "attune_train_now";
  return Guard(fn, [&]() -> attune_error {
    Clear(result_json);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    trainer::TrainingRunOptions options = s->training;
    if (options_json) {
      std::string text;
      CAPI_RETURN_IF_ERROR(CheckString(options_json, fn, "options_json", text));
      nlohmann::json obj;
      Status st = ParseJson(text, "training", obj);
      if (st.ok() && !obj.is_object()) st = InvalidArgumentError("training: expected a JSON object");
      if (st.ok()) st = ReadTrainingOptions(obj, "training", options);
      if (!st.ok()) return FailWith(st, fn);
    }
    auto result = s->assistant->TrainNow(&options);
    if (!result.ok()) return FailWith(result.status(), fn);
    return Give(Dump(TrainResultToJson(*result)), result_json, fn);
  });
}

attune_error attune_rollback(attune_assistant* handle, char** version) {
  const char* fn = "attune_rollback";
  return Guard(fn, [&]() -> attune_error {
    Clear(version);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    auto v = s->assistant->Rollback();
    if (!v.ok()) return FailWith(v.status(), fn);
    return Give(*v, version, fn);
  });
}

attune_error attune_promote(attune_assistant* handle, const char* version, int force, char** promoted) {
  const char* fn = "attune_promote";
  return Guard(fn, [&]() -> attune_error {
    Clear(promoted);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string v;
    CAPI_RETURN_IF_ERROR(CheckString(version, fn, "version", v));
    auto id = s->assistant->Promote(v, force != 0);
    if (!id.ok()) return FailWith(id.status(), fn);
    return Give(*id, promoted, fn);
  });
}

attune_error attune_export(attune_assistant* handle, const char* version, const char* format, const char* path,
                           char** result_json) {
  const char* fn = "attune_export";
  return Guard(fn, [&]() -> attune_error {
    Clear(result_json);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string v, f, p;
    CAPI_RETURN_IF_ERROR(CheckString(version, fn, "version", v));
    CAPI_RETURN_IF_ERROR(CheckString(format, fn, "format", f));
    CAPI_RETURN_IF_ERROR(CheckString(path, fn, "path", p));
    if (p.empty()) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": path is empty");
    auto r = s->assistant->Export(v, f, p);
    if (!r.ok()) return FailWith(r.status(), fn);
    return Give(Dump(ExportToJson(*r)), result_json, fn);
  });
}

attune_error attune_import(attune_assistant* handle, const char* path, int force_promote, char** result_json) {
  const char* fn = "attune_import";
  return Guard(fn, [&]() -> attune_error {
    Clear(result_json);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string p;
    CAPI_RETURN_IF_ERROR(CheckString(path, fn, "path", p));
    if (p.empty()) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": path is empty");
    auto r = s->assistant->Import(p, force_promote != 0);
    if (!r.ok()) return FailWith(r.status(), fn);
    return Give(Dump(ImportToJson(*r)), result_json, fn);
  });
}

attune_error attune_sync(attune_assistant* handle, const char* dir, char** report_json) {
  const char* fn = "attune_sync";
  return Guard(fn, [&]() -> attune_error {
    Clear(report_json);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string d;
    CAPI_RETURN_IF_ERROR(CheckString(dir, fn, "dir", d));
    if (d.empty()) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": dir is empty");
    auto r = s->assistant->Sync(d);
    if (!r.ok()) return FailWith(r.status(), fn);
    return Give(Dump(SyncToJson(*r)), report_json, fn);
  });
}

attune_error attune_device_key(attune_assistant* handle, char** key_line) {
  const char* fn = "attune_device_key";
  return Guard(fn, [&]() -> attune_error {
    Clear(key_line);
    if (key_line == nullptr) return Fail(ATTUNE_ERR_INVALID_ARGUMENT, std::string(fn) + ": key_line is null");
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    auto r = s->assistant->DeviceKey();
    if (!r.ok()) return FailWith(r.status(), fn);
    return Give(*r, key_line, fn);
  });
}

attune_error attune_trust_device(attune_assistant* handle, const char* key_line, char** device_id) {
  const char* fn = "attune_trust_device";
  return Guard(fn, [&]() -> attune_error {
    Clear(device_id);
    std::shared_ptr<OpenAssistant> s;
    CAPI_RETURN_IF_ERROR(FindOpen(handle, fn, s));
    std::string line;
    CAPI_RETURN_IF_ERROR(CheckString(key_line, fn, "key_line", line));
    auto r = s->assistant->TrustDevice(line);
    if (!r.ok()) return FailWith(r.status(), fn);
    return Give(*r, device_id, fn);
  });
}

}  // extern "C"
