#include "question_dropout.h"

#include <random>
#include <sstream>
#include <string>

namespace attune::trainer::internal {
namespace {

// FNV-1a: a seed for the event's draws that is the same on every platform
// (std::hash is not).
uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::vector<feedback::Example> QuestionDropoutCopies(const feedback::Example& example, int64_t copies, double p,
                                                     double weight, int64_t min_words, uint64_t seed) {
  std::vector<feedback::Example> out;
  if (copies <= 0 || example.kind != feedback::ExampleKind::kSft || example.context.empty()) return out;
  std::vector<std::string> words;
  {
    std::istringstream in(example.context.back().content);
    for (std::string w; in >> w;) words.push_back(w);
  }
  if (words.size() < 3 || int64_t(words.size()) < min_words) return out;
  std::mt19937_64 rng(seed ^ Fnv1a(example.event_id));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int64_t k = 0; k < copies; ++k) {
    std::string question;
    size_t kept = 0;
    for (size_t i = 0; i < words.size(); ++i) {
      const bool drop = u(rng) < p && i + 1 < words.size();
      if (drop) continue;
      if (!question.empty()) question += ' ';
      question += words[i];
      ++kept;
    }
    if (kept < 2) continue;
    feedback::Example copy = example;
    copy.event_id = example.event_id + "#q" + std::to_string(k);
    copy.context.back().content = question;
    copy.weight = float(double(example.weight) * weight);
    out.push_back(std::move(copy));
  }
  return out;
}

}  // namespace attune::trainer::internal
