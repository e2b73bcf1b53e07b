// Conversion of a feedback event into training examples.
//
// The trainer turns every stored event into zero or more Examples and feeds
// each to the loss that its kind names:
//
//   signal                       example
//   correction                   kSft  target = correction text
//   demonstration                kSft  target = demonstration text
//   rating UP                    kSft  target = response (weighted lower)
//   rating DOWN                  kKto  completion = response, undesirable
//   preference                   kDpo  chosen / rejected
//   implicit ACCEPTED, COPIED    kKto  completion = response, desirable (weak)
//   implicit REGENERATED,        kKto  completion = response, undesirable
//            DISMISSED                 (weak)
//
// KTO: Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic
// Optimization" (2024). DPO: Rafailov et al., "Direct Preference
// Optimization" (2023). The weights below multiply the example's loss.
//
// Thread safety: all functions are thread-safe.
#pragma once

#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/feedback/event.h"

namespace attune::feedback {

enum class ExampleKind {
  kSft,  // maximise log p(completion | context)
  kKto,  // desirable or undesirable completion, unpaired
  kDpo,  // completion (chosen) preferred over rejected
};

std::string_view ExampleKindName(ExampleKind kind);  // "sft", "kto", "dpo"

struct Example {
  ExampleKind kind = ExampleKind::kSft;
  std::string event_id;          // the event it came from (lineage)
  std::vector<Message> context;  // the prompt, oldest message first
  std::string completion;        // SFT target, KTO completion, DPO chosen
  std::string rejected;          // DPO only; empty otherwise
  bool desirable = true;         // KTO only; true for kSft and kDpo
  float weight = 1.0f;           // multiplies the example's loss; > 0
};

struct ExampleOptions {
  // Default: 1.0.
  float correction_weight = 1.0f;
  // Default: 1.0.
  float demonstration_weight = 1.0f;
  // A thumbs-up says "this was fine", less than "this is the answer".
  // Default: 0.5.
  float rating_up_weight = 0.5f;
  // Default: 1.0.
  float rating_down_weight = 1.0f;
  // Default: 1.0.
  float preference_weight = 1.0f;
  // ACCEPTED and COPIED: mild positives (copying shows use).
  // Default: 0.2 and 0.3.
  float implicit_accepted_weight = 0.2f;
  float implicit_copied_weight = 0.3f;
  // REGENERATED and DISMISSED: mild negatives (regenerating is an explicit
  // "not this"; dismissing may just mean the user is done).
  // Default: 0.3 and 0.1.
  float implicit_regenerated_weight = 0.3f;
  float implicit_dismissed_weight = 0.1f;
};

// The examples of one event, in a fixed order (today: exactly one per
// event). REQUIRES: `event` passed Validate. Errors: InvalidArgument when
// the event has no signal, an unspecified enum, or an empty text the
// example needs (which Validate would have rejected).
Result<std::vector<Example>> ToExamples(const Event& event, const ExampleOptions& options = {});

}  // namespace attune::feedback
