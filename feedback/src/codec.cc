// Event <-> attune.v1.FeedbackEvent (binary and JSON).
#include "attune/feedback/codec.h"

#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <vector>

#include "attune/v1/feedback.pb.h"
#include "json_reader.h"

namespace attune::feedback {
namespace {

namespace pb = ::attune::v1;

// Writers never throw on bytes that are not UTF-8: they write U+FFFD.
constexpr auto kReplace = nlohmann::json::error_handler_t::replace;

Result<Role> RoleFromString(std::string_view s) {
  std::string lower(s);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "system") return Role::kSystem;
  if (lower == "user") return Role::kUser;
  if (lower == "assistant") return Role::kAssistant;
  if (lower == "tool") return Role::kTool;
  return InvalidArgumentError("unknown role '" + std::string(s) + "' (expected system, user, assistant or tool)");
}

Thumb ThumbFromProto(pb::Rating::Thumb t) {
  switch (t) {
    case pb::Rating::UP:
      return Thumb::kUp;
    case pb::Rating::DOWN:
      return Thumb::kDown;
    default:
      return Thumb::kUnspecified;
  }
}

pb::Rating::Thumb ThumbToProto(Thumb t) {
  switch (t) {
    case Thumb::kUp:
      return pb::Rating::UP;
    case Thumb::kDown:
      return pb::Rating::DOWN;
    case Thumb::kUnspecified:
      break;
  }
  return pb::Rating::THUMB_UNSPECIFIED;
}

ImplicitAction ActionFromProto(pb::Implicit::Action a) {
  switch (a) {
    case pb::Implicit::ACCEPTED:
      return ImplicitAction::kAccepted;
    case pb::Implicit::COPIED:
      return ImplicitAction::kCopied;
    case pb::Implicit::REGENERATED:
      return ImplicitAction::kRegenerated;
    case pb::Implicit::DISMISSED:
      return ImplicitAction::kDismissed;
    default:
      return ImplicitAction::kUnspecified;
  }
}

pb::Implicit::Action ActionToProto(ImplicitAction a) {
  switch (a) {
    case ImplicitAction::kAccepted:
      return pb::Implicit::ACCEPTED;
    case ImplicitAction::kCopied:
      return pb::Implicit::COPIED;
    case ImplicitAction::kRegenerated:
      return pb::Implicit::REGENERATED;
    case ImplicitAction::kDismissed:
      return pb::Implicit::DISMISSED;
    case ImplicitAction::kUnspecified:
      break;
  }
  return pb::Implicit::ACTION_UNSPECIFIED;
}

// Unknown enum numbers (from a newer producer) survive in proto3 as raw
// ints; they become "unspecified" here and Validate rejects them.
Result<Event> FromProto(const pb::FeedbackEvent& p) {
  Event e;
  e.schema_version = p.schema_version() == 0 ? kSchemaVersion : p.schema_version();
  e.id = p.id();
  e.user_id = p.user_id();
  e.conversation_id = p.conversation_id();
  if (p.has_time()) e.time = Timestamp{p.time().seconds(), p.time().nanos()};
  for (int i = 0; i < p.context_size(); ++i) {
    auto role = RoleFromString(p.context(i).role());
    if (!role.ok()) {
      return role.status().WithContext("context[" + std::to_string(i) + "].role");
    }
    e.context.push_back(Message{*role, p.context(i).content()});
  }
  e.response = p.response();
  e.adapter_version = p.adapter_version();
  switch (p.signal_case()) {
    case pb::FeedbackEvent::kRating:
      e.signal = Rating{ThumbFromProto(p.rating().thumb())};
      break;
    case pb::FeedbackEvent::kCorrection:
      e.signal = Correction{p.correction().text()};
      break;
    case pb::FeedbackEvent::kPreference:
      e.signal = Preference{p.preference().chosen(), p.preference().rejected()};
      break;
    case pb::FeedbackEvent::kDemonstration:
      e.signal = Demonstration{p.demonstration().text()};
      break;
    case pb::FeedbackEvent::kImplicit:
      e.signal = Implicit{ActionFromProto(p.implicit().action())};
      break;
    case pb::FeedbackEvent::SIGNAL_NOT_SET:
      break;
  }
  for (const auto& a : p.attachments()) e.attachments.push_back(Attachment{a.mime_type(), a.data()});
  for (const auto& [k, v] : p.tags()) e.tags.emplace(k, v);
  return e;
}

void ToProto(const Event& e, pb::FeedbackEvent* p) {
  if (e.schema_version != kSchemaVersion) p->set_schema_version(e.schema_version);
  p->set_id(e.id);
  p->set_user_id(e.user_id);
  p->set_conversation_id(e.conversation_id);
  if (e.time.is_set()) {
    p->mutable_time()->set_seconds(e.time.seconds);
    p->mutable_time()->set_nanos(e.time.nanos);
  }
  for (const auto& m : e.context) {
    auto* pm = p->add_context();
    pm->set_role(std::string(RoleName(m.role)));
    pm->set_content(m.content);
  }
  p->set_response(e.response);
  p->set_adapter_version(e.adapter_version);
  if (auto* r = std::get_if<Rating>(&e.signal)) {
    p->mutable_rating()->set_thumb(ThumbToProto(r->thumb));
  } else if (auto* c = std::get_if<Correction>(&e.signal)) {
    p->mutable_correction()->set_text(c->text);
  } else if (auto* pr = std::get_if<Preference>(&e.signal)) {
    p->mutable_preference()->set_chosen(pr->chosen);
    p->mutable_preference()->set_rejected(pr->rejected);
  } else if (auto* d = std::get_if<Demonstration>(&e.signal)) {
    p->mutable_demonstration()->set_text(d->text);
  } else if (auto* im = std::get_if<Implicit>(&e.signal)) {
    p->mutable_implicit()->set_action(ActionToProto(im->action));
  }
  for (const auto& a : e.attachments) {
    auto* pa = p->add_attachments();
    pa->set_mime_type(a.mime_type);
    pa->set_data(a.data);
  }
  for (const auto& [k, v] : e.tags) (*p->mutable_tags())[k] = v;
}

// Protobuf's messages look like "INVALID_ARGUMENT:foo: ..."; keep the part
// after the code.
std::string ProtobufMessage(const google::protobuf::util::Status& s) {
  std::string m(s.message());
  if (m.empty()) m = s.ToString();
  static constexpr std::string_view kUnknown = "Cannot find field.";
  if (auto pos = m.find(kUnknown); pos != std::string::npos) {
    m.replace(pos, kUnknown.size(), "unknown field (not in attune.v1.FeedbackEvent)");
  }
  return m;
}

}  // namespace

Result<Event> ParseEventJson(std::string_view json, const JsonParseOptions& options) {
  // A first pass with a JSON parser gives byte offsets for syntax errors and
  // lets "time": "" mean "unset", which the protobuf mapping would reject.
  nlohmann::json doc;
  RETURN_IF_ERROR(internal::ReadStrictJson(json, options.max_bytes, options.max_depth, doc));
  if (!doc.is_object()) return InvalidArgumentError("event: expected a JSON object");
  std::vector<std::string> signals;
  for (const char* name : {"rating", "correction", "preference", "demonstration", "implicit"}) {
    if (doc.contains(name)) signals.push_back(name);
  }
  if (signals.size() > 1) {
    return InvalidArgumentError(
        "signal: exactly one of rating, correction, preference, "
        "demonstration, implicit is allowed; got " +
        signals[0] + " and " + signals[1]);
  }
  auto time = doc.find("time");
  if (time != doc.end() && (time->is_null() || (time->is_string() && time->get<std::string>().empty()))) {
    doc.erase(time);
  }
  pb::FeedbackEvent p;
  google::protobuf::util::JsonParseOptions po;
  po.ignore_unknown_fields = options.ignore_unknown_fields;
  auto s = google::protobuf::util::JsonStringToMessage(doc.dump(-1, ' ', false, kReplace), &p, po);
  if (!s.ok()) return InvalidArgumentError(internal::Printable(ProtobufMessage(s)));
  return FromProto(p);
}

std::string EventToJson(const Event& event) {
  pb::FeedbackEvent p;
  ToProto(event, &p);
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(p, &out, po);
  if (!s.ok()) return "{}";  // unreachable: every Event maps to valid JSON
  // The mapping leaves out empty strings; keep the two keys readers expect.
  if (event.user_id.empty() || event.id.empty()) {
    // No exceptions: a string that is not UTF-8 (an unvalidated event) must
    // not abort the writer.
    auto doc = nlohmann::ordered_json::parse(out, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) doc = nlohmann::ordered_json::object();
    doc["id"] = event.id;
    doc["user_id"] = event.user_id;
    out = doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  return out;
}

std::string SerializeEvent(const Event& event) {
  pb::FeedbackEvent p;
  ToProto(event, &p);
  return p.SerializeAsString();
}

Result<Event> ParseEvent(std::string_view bytes) {
  pb::FeedbackEvent p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLossError("not a valid attune.v1.FeedbackEvent (" + std::to_string(bytes.size()) + " bytes)");
  }
  auto e = FromProto(p);
  if (!e.ok()) return DataLossError(e.status().message());
  return e;
}

}  // namespace attune::feedback
