#include "attune/feedback/supersede.h"

#include <cctype>

namespace attune::feedback {
namespace {

std::string Normalise(const std::string& text) {
  std::string out;
  bool space = false;
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += char(std::tolower(c));
  }
  while (!out.empty() && (std::ispunct(static_cast<unsigned char>(out.back())) || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

std::optional<std::string> TaughtAnswer(const Event& event) {
  if (const auto* c = std::get_if<Correction>(&event.signal)) return Normalise(c->text);
  if (const auto* d = std::get_if<Demonstration>(&event.signal)) return Normalise(d->text);
  if (const auto* p = std::get_if<Preference>(&event.signal)) return Normalise(p->chosen);
  if (const auto* r = std::get_if<Rating>(&event.signal); r && r->thumb == Thumb::kUp && !event.response.empty()) {
    return Normalise(event.response);
  }
  if (const auto* i = std::get_if<Implicit>(&event.signal);
      i && (i->action == ImplicitAction::kAccepted || i->action == ImplicitAction::kCopied) && !event.response.empty()) {
    return Normalise(event.response);
  }
  return std::nullopt;
}

std::string QuestionKey(const Event& event) {
  for (auto it = event.context.rbegin(); it != event.context.rend(); ++it) {
    if (it->role == Role::kUser) return Normalise(it->content);
  }
  return "";
}

void AnswerIndex::Add(uint64_t seq, const Event& event) {
  auto answer = TaughtAnswer(event);
  const std::string question = QuestionKey(event);
  if (!answer || question.empty()) return;
  auto& slot = newest_[{event.user_id, question}];
  if (seq >= slot.first) slot = {seq, *answer};
}

bool AnswerIndex::Superseded(uint64_t seq, const Event& event) const {
  auto answer = TaughtAnswer(event);
  const std::string question = QuestionKey(event);
  if (!answer || question.empty()) return false;
  auto it = newest_.find({event.user_id, question});
  return it != newest_.end() && it->second.first > seq && it->second.second != *answer;
}

}  // namespace attune::feedback
