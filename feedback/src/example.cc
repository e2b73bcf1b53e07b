#include "attune/feedback/example.h"

namespace attune::feedback {
namespace {

Example Make(const Event& e, ExampleKind kind, std::string completion, float weight) {
  Example x;
  x.kind = kind;
  x.event_id = e.id;
  x.context = e.context;
  x.completion = std::move(completion);
  x.weight = weight;
  return x;
}

Result<Example> FromRating(const Event& e, const Rating& r, const ExampleOptions& o) {
  if (e.response.empty()) return InvalidArgumentError("response: a rating needs the response");
  if (r.thumb == Thumb::kUp) return Make(e, ExampleKind::kSft, e.response, o.rating_up_weight);
  if (r.thumb == Thumb::kDown) {
    Example x = Make(e, ExampleKind::kKto, e.response, o.rating_down_weight);
    x.desirable = false;
    return x;
  }
  return InvalidArgumentError("rating.thumb: must be UP or DOWN");
}

Result<Example> FromImplicit(const Event& e, const Implicit& im, const ExampleOptions& o) {
  if (e.response.empty()) return InvalidArgumentError("response: an implicit signal needs it");
  float weight;
  bool desirable;
  switch (im.action) {
    case ImplicitAction::kAccepted:
      weight = o.implicit_accepted_weight, desirable = true;
      break;
    case ImplicitAction::kCopied:
      weight = o.implicit_copied_weight, desirable = true;
      break;
    case ImplicitAction::kRegenerated:
      weight = o.implicit_regenerated_weight, desirable = false;
      break;
    case ImplicitAction::kDismissed:
      weight = o.implicit_dismissed_weight, desirable = false;
      break;
    default:
      return InvalidArgumentError("implicit.action: unspecified");
  }
  Example x = Make(e, ExampleKind::kKto, e.response, weight);
  x.desirable = desirable;
  return x;
}

Result<Example> FromSignal(const Event& e, const ExampleOptions& o) {
  const Signal& s = e.signal;
  if (auto* r = std::get_if<Rating>(&s)) return FromRating(e, *r, o);
  if (auto* im = std::get_if<Implicit>(&s)) return FromImplicit(e, *im, o);
  if (auto* c = std::get_if<Correction>(&s)) {
    if (c->text.empty()) return InvalidArgumentError("correction.text: must not be empty");
    return Make(e, ExampleKind::kSft, c->text, o.correction_weight);
  }
  if (auto* d = std::get_if<Demonstration>(&s)) {
    if (d->text.empty()) return InvalidArgumentError("demonstration.text: must not be empty");
    return Make(e, ExampleKind::kSft, d->text, o.demonstration_weight);
  }
  if (auto* p = std::get_if<Preference>(&s)) {
    if (p->chosen.empty() || p->rejected.empty()) {
      return InvalidArgumentError("preference: chosen and rejected must not be empty");
    }
    Example x = Make(e, ExampleKind::kDpo, p->chosen, o.preference_weight);
    x.rejected = p->rejected;
    return x;
  }
  return InvalidArgumentError("signal: the event has none");
}

}  // namespace

std::string_view ExampleKindName(ExampleKind kind) {
  switch (kind) {
    case ExampleKind::kSft:
      return "sft";
    case ExampleKind::kKto:
      return "kto";
    case ExampleKind::kDpo:
      return "dpo";
  }
  return "unknown";
}

Result<std::vector<Example>> ToExamples(const Event& event, const ExampleOptions& options) {
  auto x = FromSignal(event, options);
  if (!x.ok()) return x.status().WithContext("event '" + event.id + "'");
  std::vector<Example> out;
  out.push_back(std::move(x).value());
  return out;
}

}  // namespace attune::feedback
