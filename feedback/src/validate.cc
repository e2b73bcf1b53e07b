#include "attune/feedback/validate.h"

#include <string>

namespace attune::feedback {
namespace {

std::string Bytes(size_t n) { return std::to_string(n) + " bytes"; }

Status Fail(const std::string& field, const std::string& rule) { return InvalidArgumentError(field + ": " + rule); }

Status TooLong(const std::string& field, size_t n, const char* limit_name, size_t limit) {
  return Fail(field, Bytes(n) + " exceeds " + limit_name + " (" + std::to_string(limit) + ")");
}

// Keys: printable ASCII without spaces, so they sort, print and delimit
// cleanly (the replay store uses them in index keys).
Status CheckKey(const std::string& field, const std::string& v, bool required, const Limits& limits) {
  if (v.empty()) {
    return required ? Fail(field, "is required") : Status::Ok();
  }
  if (v.size() > limits.max_id_bytes) {
    return TooLong(field, v.size(), "max_id_bytes", limits.max_id_bytes);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(v[i]);
    if (c < 0x21 || c > 0x7e) {
      return Fail(field, "byte " + std::to_string(i) + " is not printable ASCII (allowed: 0x21..0x7e, no spaces)");
    }
  }
  return Status::Ok();
}

Status CheckText(const std::string& field, const std::string& v, bool required, const Limits& limits) {
  if (v.empty()) return required ? Fail(field, "must not be empty") : Status::Ok();
  if (v.size() > limits.max_text_bytes) {
    return TooLong(field, v.size(), "max_text_bytes", limits.max_text_bytes);
  }
  if (!IsValidUtf8(v)) return Fail(field, "is not valid UTF-8");
  return Status::Ok();
}

Status CheckTime(const Timestamp& t, const ValidateOptions& options, Timestamp now) {
  const Limits& l = options.limits;
  if (t.nanos < 0 || t.nanos > 999999999) {
    return Fail("time", "nanos " + std::to_string(t.nanos) + " outside [0, 999999999]");
  }
  if (t.seconds < l.min_time_seconds) {
    return Fail("time",
                FormatTime(t) + " is before min_time_seconds (" + FormatTime(Timestamp{l.min_time_seconds, 0}) + ")");
  }
  if (t.seconds > now.seconds + l.max_future_seconds) {
    return Fail("time", FormatTime(t) + " is more than max_future_seconds (" + std::to_string(l.max_future_seconds) +
                            ") after now (" + FormatTime(now) + ")");
  }
  return Status::Ok();
}

Status CheckContext(const std::vector<Message>& context, const Limits& limits) {
  if (context.empty()) return Fail("context", "at least one message is required");
  if (context.size() > limits.max_context_messages) {
    return Fail("context", std::to_string(context.size()) + " messages exceed max_context_messages (" +
                               std::to_string(limits.max_context_messages) + ")");
  }
  size_t total = 0;
  for (size_t i = 0; i < context.size(); ++i) {
    const Message& m = context[i];
    std::string field = "context[" + std::to_string(i) + "]";
    if (m.role != Role::kSystem && m.role != Role::kUser && m.role != Role::kAssistant && m.role != Role::kTool) {
      return Fail(field + ".role", "unknown role");
    }
    RETURN_IF_ERROR(CheckText(field + ".content", m.content, true, limits));
    total += m.content.size();
  }
  if (total > limits.max_context_bytes) {
    return TooLong("context", total, "max_context_bytes", limits.max_context_bytes);
  }
  return Status::Ok();
}

Status CheckSignal(const Event& e, const Limits& limits) {
  const Signal& s = e.signal;
  if (std::holds_alternative<std::monostate>(s)) {
    return Fail("signal",
                "exactly one of rating, correction, preference, demonstration, "
                "implicit is required");
  }
  if (auto* r = std::get_if<Rating>(&s)) {
    if (r->thumb != Thumb::kUp && r->thumb != Thumb::kDown) {
      return Fail("rating.thumb", "must be UP or DOWN");
    }
    if (e.response.empty()) return Fail("response", "must not be empty for a rating");
    return Status::Ok();
  }
  if (auto* c = std::get_if<Correction>(&s)) {
    return CheckText("correction.text", c->text, true, limits);
  }
  if (auto* p = std::get_if<Preference>(&s)) {
    RETURN_IF_ERROR(CheckText("preference.chosen", p->chosen, true, limits));
    RETURN_IF_ERROR(CheckText("preference.rejected", p->rejected, true, limits));
    if (p->chosen == p->rejected) {
      return Fail("preference", "chosen and rejected must differ");
    }
    return Status::Ok();
  }
  if (auto* d = std::get_if<Demonstration>(&s)) {
    return CheckText("demonstration.text", d->text, true, limits);
  }
  auto* im = std::get_if<Implicit>(&s);
  if (im->action == ImplicitAction::kUnspecified || static_cast<int>(im->action) < 0 ||
      im->action > ImplicitAction::kDismissed) {
    return Fail("implicit.action", "must be ACCEPTED, COPIED, REGENERATED or DISMISSED");
  }
  if (e.response.empty()) return Fail("response", "must not be empty for an implicit signal");
  return Status::Ok();
}

Status CheckAttachments(const std::vector<Attachment>& atts, const Limits& limits) {
  if (atts.size() > limits.max_attachments) {
    return Fail("attachments", std::to_string(atts.size()) + " exceed max_attachments (" +
                                   std::to_string(limits.max_attachments) + ")");
  }
  size_t total = 0;
  for (size_t i = 0; i < atts.size(); ++i) {
    std::string field = "attachments[" + std::to_string(i) + "]";
    const Attachment& a = atts[i];
    if (a.mime_type.empty()) return Fail(field + ".mime_type", "is required");
    if (a.mime_type.size() > limits.max_mime_type_bytes) {
      return TooLong(field + ".mime_type", a.mime_type.size(), "max_mime_type_bytes", limits.max_mime_type_bytes);
    }
    size_t slash = a.mime_type.find('/');
    bool ascii = true;
    for (char c : a.mime_type) ascii = ascii && c > 0x20 && c < 0x7f;
    if (slash == std::string::npos || slash == 0 || slash + 1 == a.mime_type.size() || !ascii) {
      return Fail(field + ".mime_type", "'" + a.mime_type + "' is not of the form type/subtype (RFC 6838)");
    }
    if (a.data.empty()) return Fail(field + ".data", "must not be empty");
    if (a.data.size() > limits.max_attachment_bytes) {
      return TooLong(field + ".data", a.data.size(), "max_attachment_bytes", limits.max_attachment_bytes);
    }
    total += a.data.size();
  }
  if (total > limits.max_total_attachment_bytes) {
    return TooLong("attachments", total, "max_total_attachment_bytes", limits.max_total_attachment_bytes);
  }
  return Status::Ok();
}

Status CheckTags(const std::map<std::string, std::string>& tags, const Limits& limits) {
  if (tags.size() > limits.max_tags) {
    return Fail("tags",
                std::to_string(tags.size()) + " entries exceed max_tags (" + std::to_string(limits.max_tags) + ")");
  }
  for (const auto& [k, v] : tags) {
    std::string field = "tags[\"" + (IsValidUtf8(k) ? k : std::string("?")) + "\"]";
    if (k.empty()) return Fail("tags", "a key must not be empty");
    if (k.size() > limits.max_tag_key_bytes) {
      return TooLong(field, k.size(), "max_tag_key_bytes (key)", limits.max_tag_key_bytes);
    }
    if (!IsValidUtf8(k)) return Fail("tags", "a key is not valid UTF-8");
    if (v.size() > limits.max_tag_value_bytes) {
      return TooLong(field, v.size(), "max_tag_value_bytes", limits.max_tag_value_bytes);
    }
    if (!IsValidUtf8(v)) return Fail(field, "value is not valid UTF-8");
  }
  return Status::Ok();
}

Status ValidateAt(const Event& e, const ValidateOptions& options, Timestamp now, bool allow_unset_time) {
  const Limits& l = options.limits;
  if (e.schema_version > kSchemaVersion) {
    return FailedPreconditionError("schema_version: " + std::to_string(e.schema_version) +
                                   " is newer than this build supports (" + std::to_string(kSchemaVersion) +
                                   "); upgrade attune");
  }
  RETURN_IF_ERROR(CheckKey("id", e.id, true, l));
  RETURN_IF_ERROR(CheckKey("user_id", e.user_id, true, l));
  RETURN_IF_ERROR(CheckKey("conversation_id", e.conversation_id, false, l));
  RETURN_IF_ERROR(CheckKey("adapter_version", e.adapter_version, false, l));
  if (e.time.is_set()) {
    RETURN_IF_ERROR(CheckTime(e.time, options, now));
  } else if (!allow_unset_time) {
    return Fail("time", "is required");
  }
  RETURN_IF_ERROR(CheckContext(e.context, l));
  RETURN_IF_ERROR(CheckText("response", e.response, false, l));
  RETURN_IF_ERROR(CheckSignal(e, l));
  RETURN_IF_ERROR(CheckAttachments(e.attachments, l));
  return CheckTags(e.tags, l);
}

Timestamp Clock(const ValidateOptions& options) { return options.now ? options.now() : Now(); }

}  // namespace

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += n + 1;
  }
  return true;
}

Status Validate(const Event& event, const ValidateOptions& options) {
  return ValidateAt(event, options, Clock(options), /*allow_unset_time=*/false);
}

Status ValidateAndNormalize(Event& event, const ValidateOptions& options) {
  Timestamp now = Clock(options);
  RETURN_IF_ERROR(ValidateAt(event, options, now, /*allow_unset_time=*/true));
  if (!event.time.is_set()) event.time = now;
  if (event.schema_version == 0) event.schema_version = kSchemaVersion;
  return Status::Ok();
}

}  // namespace attune::feedback
