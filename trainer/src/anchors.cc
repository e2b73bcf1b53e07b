#include "anchors.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace attune::trainer::internal {
namespace {

// `s` in lowercase ASCII.
std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `text` cut into words (ASCII letters and the apostrophes within or after
// them: "dog's", "I'm", "dogs'") and what lies between them, in order; joined they give
// `text` back.
struct Part {
  std::string text;
  bool word = false;
};
std::vector<Part> SplitWords(const std::string& text) {
  auto letter = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; };
  std::vector<Part> parts;
  for (size_t i = 0; i < text.size();) {
    const bool word = letter(text[i]);
    size_t j = i;
    while (j < text.size() && (word ? letter(text[j]) || text[j] == '\'' : !letter(text[j]))) ++j;
    parts.push_back({text.substr(i, j - i), word});
    i = j;
  }
  return parts;
}

// Lowercase ASCII words of `text` that carry content (not "what", "my", ...),
// with a plural "s" dropped; a word's pieces around an apostrophe count as
// words of their own ("dog's": "dog" and the stop word "s").
std::set<std::string> ContentWords(const std::string& text) {
  static const std::set<std::string> kStop = {
      "a",     "an",   "the",   "is",   "are",   "was",  "were", "do",    "does",  "did",   "i",     "me",
      "my",    "mine", "you",   "your", "we",    "our",  "what", "which", "who",   "whom",  "whose", "when",
      "where", "why",  "how",   "of",   "in",    "on",   "at",   "to",    "for",   "and",   "or",    "it",
      "its",   "this", "that",  "with", "from",  "by",   "be",   "can",   "could", "would", "should", "will",
      "tell",  "please", "remind", "know", "remember", "s", "whats", "am", "have", "has", "called",
      "name",  "one",  "some",  "about", "give", "there", "into", "as", "many", "much"};
  std::set<std::string> out;
  for (const Part& p : SplitWords(text)) {
    if (!p.word) continue;
    size_t i = 0;
    while (i <= p.text.size()) {
      size_t j = p.text.find('\'', i);
      if (j == std::string::npos) j = p.text.size();
      std::string w = Lower(p.text.substr(i, j - i));
      if (w.size() > 3 && w.back() == 's') w.pop_back();
      if (!w.empty() && !kStop.count(w)) out.insert(w);
      i = j + 1;
    }
  }
  return out;
}

}  // namespace

const std::vector<std::string>& AnchorPool() {
  static const std::vector<std::string> kPool = {
      // The first sixteen: broad, any window (the pool of earlier releases).
      "What is the largest ocean on Earth?",
      "How do plants get water?",
      "Give me three tips for writing a good email.",
      "What is the difference between weather and climate?",
      "Explain what a computer program is.",
      "What are the three states of matter?",
      "Suggest a name for a bakery.",
      "How many continents are there?",
      "What is gravity?",
      "Write one sentence about the moon.",
      "What should I pack for a day at the beach?",
      "What is the square root of 81?",
      "Describe a rainbow.",
      "Why do we need sleep?",
      "What language is spoken in Brazil?",
      "How does a bicycle work?",
      // Questions of the shapes users ask about themselves, about the world.
      "What is the name of the dog in the Peanuts comic strip?",
      "What was the name of Alexander the Great's horse?",
      "What do you call a young dog?",
      "What is the name of Harry Potter's owl?",
      "Which city is the capital of Norway?",
      "Which city is known as the Big Apple?",
      "In which city is the Eiffel Tower?",
      "Where do penguins live?",
      "Where is the Great Barrier Reef?",
      "What color do you get by mixing blue and yellow?",
      "What color is a ripe tomato?",
      "Which color is a stop sign?",
      "What instrument has 88 keys?",
      "Which instrument did Louis Armstrong play?",
      "What instrument is used to keep the beat in a band?",
      "What is sushi made of?",
      "Which food is Italy famous for?",
      "What fruit keeps the doctor away?",
      "When is Christmas Day?",
      "In which month does spring begin in the northern hemisphere?",
      "On which day of the week does the weekend start?",
      "What car company makes the Model S?",
      "Which country does the Volkswagen Beetle come from?",
      "How many wheels does a car have?",
      "Who was the brother of Wilbur Wright?",
      "Who was the sister of Moses?",
      "What do you call your mother's sister?",
      "Which company makes Windows?",
      "Who founded Microsoft?",
      "What does a teacher do?",
      "What do you call a doctor who treats teeth?",
      "Which sport uses a shuttlecock?",
      "How many players are on a soccer team?",
      "Which language is spoken in Mexico?",
      "What is the language of Germany?",
      "What is a university?",
      "What subject studies maps and countries?",
      "What pet says meow?",
      "Which bird can talk?",
      "What flower is a symbol of love?",
      "Who composed the Moonlight Sonata?",
      "What is medicine for?",
      "What is a phone used for?",
      "Which game is played with a king and a queen on a board?",
      "What do you call a person who rides a bicycle?",
      "What year did World War II end?",
      "What does a mechanical engineer do?",
      "What time is noon?",
      "What is the tallest mountain in the world?",
      "How many strings does a violin have?",
  };
  return kPool;
}

std::vector<size_t> SelectAnchors(const std::vector<std::string>& pool,
                                  const std::vector<std::string>& window_prompts, int64_t n,
                                  const std::string& selection) {
  const size_t count = size_t(std::clamp<int64_t>(n, 0, int64_t(pool.size())));
  std::vector<size_t> order(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) order[i] = i;
  if (selection == "nearest") {
    std::set<std::string> words;
    for (const auto& p : window_prompts) {
      for (auto& w : ContentWords(p)) words.insert(w);
    }
    std::vector<int> score(pool.size(), 0);
    for (size_t i = 0; i < pool.size(); ++i) {
      for (const auto& w : ContentWords(pool[i])) score[i] += int(words.count(w));
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  }
  order.resize(count);
  return order;
}

std::string Depersonalize(const std::string& prompt) {
  std::vector<Part> parts = SplitWords(prompt);
  static const std::set<std::string> kAddressee = {"tell", "remind", "give", "show", "help", "let"};
  bool changed = false;
  std::string prev;  // the previous word, lowercase
  for (size_t k = 0; k < parts.size(); ++k) {
    if (!parts[k].word) continue;
    const std::string w = Lower(parts[k].text);
    std::string to;
    if (w == "my") to = "a";
    else if (w == "mine") to = "theirs";
    else if (w == "myself") to = "oneself";
    else if (w == "i'm") to = "people are";
    else if (w == "i've") to = "people have";
    else if (w == "i'd") to = "people would";
    else if (w == "i'll") to = "people will";
    else if (w == "i") to = "people";
    else if (w == "me" && !kAddressee.count(prev)) to = "people";
    else if (w == "am") {
      // "am I" and "I am" -> "are people", "people are" (the "I" is
      // replaced on its own turn).
      size_t n = k + 1;
      while (n < parts.size() && !parts[n].word) ++n;
      if (prev == "i" || (n < parts.size() && Lower(parts[n].text) == "i")) to = "are";
    }
    prev = w;
    if (to.empty()) continue;
    // Capitalised at the start of a sentence only ("I" always is).
    const bool starts = k == 0 || (k == 1 && !parts[0].word) || parts[k - 1].text.find_first_of(".?!") != std::string::npos;
    if (starts && std::isupper(static_cast<unsigned char>(parts[k].text[0]))) to[0] = char(std::toupper(static_cast<unsigned char>(to[0])));
    parts[k].text = to;
    changed = true;
  }
  if (!changed) return "";
  std::string out;
  for (const auto& p : parts) out += p.text;
  return out;
}

std::vector<std::string> ContrastPrompts(const std::vector<std::string>& window_prompts, int64_t n) {
  std::vector<std::string> all;
  std::set<std::string> seen;
  for (const auto& p : window_prompts) {
    std::string d = Depersonalize(p);
    if (!d.empty() && seen.insert(Lower(d)).second) all.push_back(std::move(d));
  }
  if (n <= 0) return {};
  if (int64_t(all.size()) <= n) return all;
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(all[size_t(i * int64_t(all.size()) / n)]);
  return out;
}

}  // namespace attune::trainer::internal
