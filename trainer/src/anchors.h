// The anti-forgetting anchors' prompts: a built-in pool of general prompts
// and the choice of the ones a window distils toward the base model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attune::trainer::internal {

// The pool, in a fixed order (TrainerOptions::anchor_selection "first" takes
// its head). None of it is a question about a user, and it is disjoint from
// the forgetting prompts and from the general questions of
// examples/personas/, so neither measurement is trained on.
const std::vector<std::string>& AnchorPool();

// Indices into `pool` of `n` anchors. "first": the pool's first n.
// "nearest": the n sharing the most content words with `window_prompts`
// (the window's user messages), ties and the rest in pool order, so that the
// base model's behaviour is pinned where the window's facts could leak (a
// question about the user's favourite colour pulls on every question about
// colours).
std::vector<size_t> SelectAnchors(const std::vector<std::string>& pool,
                                  const std::vector<std::string>& window_prompts, int64_t n,
                                  const std::string& selection);

// `prompt` about no one: first-person words replaced ("my" -> "a", "I" /
// "me" -> "people", "am I" -> "are people", "I am" -> "people are"), or ""
// when it has none. The window's own questions asked of the world: a
// contrast anchor pins the base model's answer to "What is a dog's name?"
// while the window teaches "What is my dog's name?". English only.
std::string Depersonalize(const std::string& prompt);

// Up to `n` distinct depersonalized `window_prompts`, spread evenly over
// them (the window's prompts come grouped by fact).
std::vector<std::string> ContrastPrompts(const std::vector<std::string>& window_prompts, int64_t n);

}  // namespace attune::trainer::internal
