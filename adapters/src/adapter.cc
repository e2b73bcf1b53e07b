#include "attune/adapters/adapter.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace attune::adapters {
namespace {

constexpr std::string_view kTargetNames[kNumLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};

std::string ShortFingerprint(const std::string& fp) { return fp.empty() ? "(none)" : fp.substr(0, 12); }

std::string DimsString(const TargetDims& d) { return "[" + std::to_string(d.out) + " x " + std::to_string(d.in) + "]"; }

Status CheckMatrix(const Matrix& m, int64_t rows, int64_t cols, const std::string& name) {
  if (m.shape.size() != 2 || m.shape[0] != rows || m.shape[1] != cols) {
    std::ostringstream os;
    os << name << ": shape [";
    for (size_t i = 0; i < m.shape.size(); ++i) os << (i ? ", " : "") << m.shape[i];
    os << "], expected [" << rows << ", " << cols << "]";
    return InvalidArgumentError(os.str());
  }
  if (m.data.size() != static_cast<size_t>(rows * cols)) {
    return InvalidArgumentError(name + ": " + std::to_string(m.data.size()) + " values, expected " +
                                std::to_string(rows * cols));
  }
  for (size_t i = 0; i < m.data.size(); ++i) {
    if (!std::isfinite(m.data[i])) {
      return InvalidArgumentError(name + ": non-finite value at index " + std::to_string(i));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string_view LoraTargetName(LoraTarget target) {
  int i = static_cast<int>(target);
  return (i >= 0 && i < kNumLoraTargets) ? kTargetNames[i] : std::string_view("?");
}

Result<LoraTarget> ParseLoraTarget(std::string_view name) {
  for (int i = 0; i < kNumLoraTargets; ++i) {
    if (kTargetNames[i] == name) return static_cast<LoraTarget>(i);
  }
  return InvalidArgumentError("unknown LoRA target '" + std::string(name) + "' (known: q, k, v, o, gate, up, down)");
}

std::string TensorName(int64_t layer, LoraTarget target, bool is_b) {
  return "layer " + std::to_string(layer) + " target " + std::string(LoraTargetName(target)) + " matrix " +
         (is_b ? "b" : "a");
}

double Scope::Logit(const float* x) const {
  double z = bias;
  for (size_t j = 0; j < weight.size(); ++j) z += double(weight[j]) * ((double(x[j]) - mean[j]) * scale[j]);
  return z;
}

bool Adapter::HasTarget(LoraTarget t) const { return std::find(targets.begin(), targets.end(), t) != targets.end(); }

Status Adapter::Validate() const {
  if (rank < 1 || rank > kMaxRank) {
    return InvalidArgumentError("rank " + std::to_string(rank) + " is outside [1, " + std::to_string(kMaxRank) + "]");
  }
  if (!std::isfinite(alpha) || alpha <= 0) return InvalidArgumentError("alpha must be finite and > 0");
  if (n_layers < 1 || n_layers > kMaxLayers) {
    return InvalidArgumentError("n_layers " + std::to_string(n_layers) + " is outside [1, " +
                                std::to_string(kMaxLayers) + "]");
  }
  if (static_cast<int64_t>(layers.size()) != n_layers) {
    return InvalidArgumentError("adapter has " + std::to_string(layers.size()) + " layers of tensors, n_layers is " +
                                std::to_string(n_layers));
  }
  if (targets.empty()) return InvalidArgumentError("adapter has no targets");
  bool seen[kNumLoraTargets] = {};
  for (LoraTarget t : targets) {
    int i = static_cast<int>(t);
    if (i < 0 || i >= kNumLoraTargets) return InvalidArgumentError("target index " + std::to_string(i) + " is invalid");
    if (seen[i]) return InvalidArgumentError("target " + std::string(LoraTargetName(t)) + " is listed twice");
    seen[i] = true;
    const TargetDims& d = base_dims[i];
    if (d.in < 1 || d.in > kMaxDim || d.out < 1 || d.out > kMaxDim) {
      return InvalidArgumentError("base dims of target " + std::string(LoraTargetName(t)) + " " + DimsString(d) +
                                  " are outside [1, " + std::to_string(kMaxDim) + "]");
    }
  }
  if (!parent_version.empty() &&
      (parent_version.size() != 64 || parent_version.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return InvalidArgumentError("parent_version '" + parent_version + "' is not a version id (64 hex chars)");
  }
  if (lineage.size() > kMaxLineageEntries) return InvalidArgumentError("lineage has too many entries");
  if (metrics.size() > kMaxMapEntries || training_config.size() > kMaxMapEntries) {
    return InvalidArgumentError("metrics or training_config have more than " + std::to_string(kMaxMapEntries) +
                                " entries");
  }
  if (!scope.empty()) {
    const size_t h = scope.weight.size();
    if (scope.layer < 1 || scope.layer > n_layers) {
      return InvalidArgumentError("scope layer " + std::to_string(scope.layer) + " is outside [1, " +
                                  std::to_string(n_layers) + "]");
    }
    if (h > static_cast<size_t>(kMaxDim) || scope.mean.size() != h || scope.scale.size() != h) {
      return InvalidArgumentError("scope has " + std::to_string(h) + " weights, " + std::to_string(scope.mean.size()) +
                                  " means and " + std::to_string(scope.scale.size()) +
                                  " scales (they must be equal, at most " + std::to_string(kMaxDim) + ")");
    }
    auto finite = [](const std::vector<float>& v) {
      return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
    };
    if (!finite(scope.mean) || !finite(scope.scale) || !finite(scope.weight) || !std::isfinite(scope.bias)) {
      return InvalidArgumentError("scope holds a value that is not finite");
    }
  } else if (!scope.mean.empty() || !scope.scale.empty()) {
    return InvalidArgumentError("scope has means or scales but no weights");
  }
  size_t present = 0;
  for (int64_t l = 0; l < n_layers; ++l) {
    for (int i = 0; i < kNumLoraTargets; ++i) {
      const LoraPair& p = layers[l][i];
      LoraTarget t = static_cast<LoraTarget>(i);
      if (p.empty()) continue;
      if (!seen[i]) {
        return InvalidArgumentError(TensorName(l, t, false) + ": target " + std::string(LoraTargetName(t)) +
                                    " is not in the adapter's targets");
      }
      RETURN_IF_ERROR(CheckMatrix(p.a, rank, base_dims[i].in, TensorName(l, t, false)));
      RETURN_IF_ERROR(CheckMatrix(p.b, base_dims[i].out, rank, TensorName(l, t, true)));
      ++present;
    }
  }
  if (present == 0) return InvalidArgumentError("adapter has no LoRA tensors");
  return Status::Ok();
}

Status Adapter::CheckCompatible(const BaseModelInfo& base) const {
  const std::string ours = ShortFingerprint(base_fingerprint) + " (" + arch + ")";
  const std::string theirs = ShortFingerprint(base.fingerprint) + " (" + base.arch + ")";
  const std::string hint = " (hint: maybe wrong base model?)";
  if (arch != base.arch || base_fingerprint != base.fingerprint) {
    return FailedPreconditionError("adapter was trained for base model " + ours + ", this is " + theirs + hint);
  }
  if (n_layers != base.n_layers) {
    return FailedPreconditionError("adapter has " + std::to_string(n_layers) + " layers, base model " + theirs +
                                   " has " + std::to_string(base.n_layers) + hint);
  }
  for (LoraTarget t : targets) {
    int i = static_cast<int>(t);
    if (base_dims[i] != base.dims[i]) {
      // Name the first tensor that would not fit.
      int64_t layer = 0;
      while (layer < n_layers && layers[layer][i].empty()) ++layer;
      return FailedPreconditionError(TensorName(layer, t, false) + ": adapter expects base weight " +
                                     DimsString(base_dims[i]) + ", base model " + theirs + " has " +
                                     DimsString(base.dims[i]) + hint);
    }
  }
  return Status::Ok();
}

size_t Adapter::ParameterCount() const {
  size_t n = 0;
  for (const auto& layer : layers) {
    for (const LoraPair& p : layer) n += p.a.data.size() + p.b.data.size();
  }
  return n;
}

}  // namespace attune::adapters
