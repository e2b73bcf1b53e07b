// Newer feedback supersedes older: when a user teaches a different answer to
// a question they taught before (they moved city, the dog was renamed), the
// older event must not be replayed any more, or training would keep
// re-teaching what the user has since corrected.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "attune/feedback/event.h"

namespace attune::feedback {

// The answer `event` teaches for its question, if it teaches one: a
// correction's or demonstration's text, a preference's chosen answer, or the
// response of a thumbs-up or an accepted/copied reply. Normalised like
// QuestionKey, so that two spellings of one answer do not conflict.
std::optional<std::string> TaughtAnswer(const Event& event);

// The question: the last user message of the context, lower-cased, with runs
// of whitespace as one space and trailing punctuation and spaces removed.
// "" when the context has no user message.
std::string QuestionKey(const Event& event);

// The newest answer each user taught to each question, fed events in any
// order with their seqs.
class AnswerIndex {
 public:
  void Add(uint64_t seq, const Event& event);
  // True when a newer event (higher seq) of the same user teaches a
  // different answer to the same question than `event` (seq `seq`) does.
  bool Superseded(uint64_t seq, const Event& event) const;
  size_t size() const { return newest_.size(); }

 private:
  // (user, question) -> (seq, answer) of the newest teaching event.
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, std::string>> newest_;
};

}  // namespace attune::feedback
