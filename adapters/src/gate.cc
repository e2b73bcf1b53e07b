#include "attune/adapters/gate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace attune::adapters {
namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

bool Finite(double v) { return std::isfinite(v); }

}  // namespace

void StoreGateInput(const GateInput& in, std::map<std::string, double>& metrics,
                    std::map<std::string, std::string>& config) {
  metrics[kMetricNewLoss] = in.new_loss;
  metrics[kMetricNewLossParent] = in.new_loss_parent;
  metrics[kMetricReplayLoss] = in.replay_loss;
  metrics[kMetricReplayLossActive] = in.replay_loss_active;
  metrics[kMetricForgettingKl] = in.forgetting_kl;
  if (in.heldout_loss) metrics[kMetricHeldoutLoss] = *in.heldout_loss;
  if (in.heldout_loss_active) metrics[kMetricHeldoutLossActive] = *in.heldout_loss_active;
  config[kConfigEvalActiveVersion] = in.active_version;
}

Result<GateInput> GateInputFromMetrics(const std::map<std::string, double>& metrics,
                                       const std::map<std::string, std::string>& config) {
  GateInput in;
  std::string missing;
  auto get = [&](const char* key, double& out) {
    auto it = metrics.find(key);
    if (it == metrics.end()) {
      missing += (missing.empty() ? "" : ", ") + std::string(key);
    } else {
      out = it->second;
    }
  };
  get(kMetricNewLoss, in.new_loss);
  get(kMetricNewLossParent, in.new_loss_parent);
  get(kMetricReplayLoss, in.replay_loss);
  get(kMetricReplayLossActive, in.replay_loss_active);
  get(kMetricForgettingKl, in.forgetting_kl);
  if (!missing.empty()) {
    return FailedPreconditionError("no evaluation report: metrics " + missing +
                                   " are missing (hint: promote with --force to skip the gate)");
  }
  auto h = metrics.find(kMetricHeldoutLoss);
  auto ha = metrics.find(kMetricHeldoutLossActive);
  if (h != metrics.end() && ha != metrics.end()) {
    in.heldout_loss = h->second;
    in.heldout_loss_active = ha->second;
  }
  auto av = config.find(kConfigEvalActiveVersion);
  if (av != config.end()) in.active_version = av->second;
  return in;
}

std::string GateDecision::Summary() const {
  if (passed) return "passed";
  std::string s;
  for (const auto& f : failures) s += (s.empty() ? "" : "; ") + f;
  return s;
}

GateDecision EvaluateGate(const GateOptions& o, const GateInput& in) {
  GateDecision d;
  const double new_bound = in.new_loss_parent * (1.0 - o.min_new_loss_improvement);
  if (!Finite(in.new_loss) || !Finite(in.new_loss_parent) || !(in.new_loss <= new_bound)) {
    d.failures.push_back("did not learn the new events: loss " + Num(in.new_loss) + " vs parent " +
                         Num(in.new_loss_parent) + " (needs <= " + Num(new_bound) + ", a " +
                         Num(o.min_new_loss_improvement * 100) + " % drop)");
  }
  const double replay_bound = in.replay_loss_active * (1.0 + o.max_replay_regression);
  const bool replay_known = in.replay_loss <= o.replay_loss_floor;  // (false for NaN)
  if (!Finite(in.replay_loss) || !Finite(in.replay_loss_active) || !(in.replay_loss <= replay_bound || replay_known)) {
    d.failures.push_back("regressed on replayed events: loss " + Num(in.replay_loss) + " vs active " +
                         Num(in.replay_loss_active) + " (allowed <= " + Num(std::max(replay_bound, o.replay_loss_floor)) + ")");
  }
  if (in.heldout_loss.has_value() != in.heldout_loss_active.has_value()) {
    d.failures.push_back("held-out loss given for only one of candidate and active version");
  } else if (in.heldout_loss) {
    const double bound = *in.heldout_loss_active * (1.0 + o.max_heldout_regression);
    if (!Finite(*in.heldout_loss) || !Finite(*in.heldout_loss_active) || !(*in.heldout_loss <= bound)) {
      d.failures.push_back("worse on the held-out slice: loss " + Num(*in.heldout_loss) + " vs active " +
                           Num(*in.heldout_loss_active) + " (allowed <= " + Num(bound) + ")");
    }
  }
  if (!Finite(in.forgetting_kl) || !(in.forgetting_kl <= o.max_forgetting_kl)) {
    d.failures.push_back("forgetting KL " + Num(in.forgetting_kl) + " exceeds the bound " + Num(o.max_forgetting_kl));
  }
  d.passed = d.failures.empty();
  return d;
}

Status ValidateGateOptions(const GateOptions& o, const std::string& prefix) {
  const std::pair<const char*, double> limits[] = {{"max_forgetting_kl", o.max_forgetting_kl},
                                                   {"max_replay_regression", o.max_replay_regression},
                                                   {"replay_loss_floor", o.replay_loss_floor},
                                                   {"max_heldout_regression", o.max_heldout_regression}};
  for (const auto& [name, value] : limits) {
    if (!(value >= 0)) return InvalidArgumentError(prefix + name + " must be >= 0");
  }
  // A drop of 100 % or more asks for a loss of 0 or below: nothing passes.
  if (!(o.min_new_loss_improvement >= 0 && o.min_new_loss_improvement < 1)) {
    return InvalidArgumentError(prefix + "min_new_loss_improvement must be in [0, 1)");
  }
  return Status::Ok();
}

}  // namespace attune::adapters
