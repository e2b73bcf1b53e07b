// An adapter's scope (adapters::Scope): which requests it answers, decided
// by a linear probe on the base model's hidden states. The trainer fits it
// on the window's user messages (in scope) and general questions (out); the
// engine asks it before every generation with a scoped adapter and lets the
// base model answer the rest, so what a window teaches cannot reach a
// question it was not about. docs/adapters.md, "Scope".
//
// Thread safety: free functions; the model is shared read-only.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/runtime/model.h"

namespace attune::runtime {

// The features of `text` (raw, no chat template): the mean over its tokens
// after the first of the base model's hidden state after `layer` layers,
// float [hidden]. A text of one token gives that token's state.
Result<at::Tensor> ScopeFeatures(const Model& model, const std::string& text, int64_t layer);

struct ScopeFitOptions {
  // Hidden state after this many layers; 0: half the model's. Default: 0
  int64_t layer = 0;
  // L2 penalty on the standardized weights, and full-batch gradient steps.
  double l2 = 1e-2;
  int steps = 500;
  double learning_rate = 0.05;
};

// Fits the probe: logistic regression on the features standardized by the
// out-of-scope texts' mean and spread, the two sides weighted equally,
// from zero weights (deterministic). InvalidArgument when either side is
// empty; errors of ScopeFeatures name the text.
Result<adapters::Scope> FitScope(const Model& model, const std::vector<std::string>& in,
                                 const std::vector<std::string>& out, const ScopeFitOptions& options = {});

// The probe's score for `text` (> 0: in scope). FailedPrecondition when the
// scope does not fit the model (its width or layer).
Result<double> ScopeScore(const Model& model, const adapters::Scope& scope, const std::string& text);

// Whether a scoped adapter answers `text`: true for an empty scope, or when
// the score is above 0. A text that cannot be scored is out of scope (the
// base model answers).
bool InScope(const Model& model, const adapters::Scope& scope, const std::string& text);

// FailedPrecondition naming what differs when `scope` cannot be used with
// `model`; Ok for an empty scope.
Status CheckScopeFits(const Model& model, const adapters::Scope& scope);

}  // namespace attune::runtime
