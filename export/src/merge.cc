#include "attune/export/merge.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <set>

#include "src/names.h"

namespace attune::export_ {
namespace {

using adapters::Adapter;
using adapters::LoraTarget;
using adapters::kNumLoraTargets;
using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double Scale(const Adapter& a) {
  return a.rslora ? a.alpha / std::sqrt(double(a.rank)) : a.alpha / double(a.rank);
}

Mat ToEigen(const adapters::Matrix& m) {
  Mat out(m.shape[0], m.shape[1]);
  for (int64_t i = 0; i < out.size(); ++i) out.data()[i] = m.data[size_t(i)];
  return out;
}

adapters::Matrix FromEigen(const Mat& m) {
  adapters::Matrix out{{m.rows(), m.cols()}, std::vector<float>(size_t(m.size()))};
  for (int64_t i = 0; i < m.size(); ++i) out.data[size_t(i)] = float(m.data()[i]);
  return out;
}

Status CheckSameBase(const std::vector<MergeInput>& in) {
  const Adapter& first = *in[0].adapter;
  for (size_t i = 1; i < in.size(); ++i) {
    const Adapter& a = *in[i].adapter;
    std::string who = "input " + std::to_string(i + 1) + (in[i].version_id.empty() ? "" : " (" + in[i].version_id.substr(0, 12) + ")");
    if (a.base_fingerprint != first.base_fingerprint || a.arch != first.arch || a.n_layers != first.n_layers) {
      return FailedPreconditionError(who + " was trained for another base model than input 1 (" +
                                     a.base_fingerprint.substr(0, 12) + " vs " + first.base_fingerprint.substr(0, 12) + ")");
    }
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (a.HasTarget(LoraTarget(t)) && first.HasTarget(LoraTarget(t)) && a.base_dims[size_t(t)] != first.base_dims[size_t(t)]) {
        return FailedPreconditionError(who + ": target " + std::string(adapters::LoraTargetName(LoraTarget(t))) +
                                       " has other widths than in input 1");
      }
    }
  }
  return Status::Ok();
}

// Stacked factors of one layer/target: ΔW = Bc · Ac with the weights and
// scales folded into Bc. Returns false when no input adapts this pair.
bool StackedFactors(const std::vector<MergeInput>& in, const std::vector<double>& w, int64_t layer, int t,
                    const adapters::TargetDims& d, Mat* bc, Mat* ac) {
  int64_t total = 0;
  for (const auto& i : in) {
    if (!i.adapter->layers[size_t(layer)][size_t(t)].empty()) total += i.adapter->rank;
  }
  if (total == 0) return false;
  *bc = Mat::Zero(d.out, total);
  *ac = Mat::Zero(total, d.in);
  int64_t at = 0;
  for (size_t k = 0; k < in.size(); ++k) {
    const Adapter& a = *in[k].adapter;
    const auto& p = a.layers[size_t(layer)][size_t(t)];
    if (p.empty()) continue;
    bc->middleCols(at, a.rank) = ToEigen(p.b) * (w[k] * Scale(a));
    ac->middleRows(at, a.rank) = ToEigen(p.a);
    at += a.rank;
  }
  return true;
}

// Best rank-r factors of Bc·Ac via QR of both factors and a small SVD.
double TruncatedSvd(const Mat& bc, const Mat& ac, int64_t r, Mat* b, Mat* a) {
  if (bc.cols() > bc.rows() || bc.cols() > ac.cols()) {
    // More stacked rank than width: the dense product is the small one.
    Mat dense = bc * ac;
    return TruncatedSvd(dense, Mat::Identity(dense.cols(), dense.cols()), r, b, a);
  }
  Eigen::HouseholderQR<Mat> qb(bc), qa(ac.transpose());
  const int64_t k = bc.cols();
  Mat q_b = qb.householderQ() * Mat::Identity(bc.rows(), k);
  Mat q_a = qa.householderQ() * Mat::Identity(ac.cols(), k);
  Mat r_b = qb.matrixQR().topRows(k).triangularView<Eigen::Upper>();
  Mat r_a = qa.matrixQR().topRows(k).triangularView<Eigen::Upper>();
  Eigen::JacobiSVD<Mat> svd(r_b * r_a.transpose(), Eigen::ComputeFullU | Eigen::ComputeFullV);
  const auto& s = svd.singularValues();
  const int64_t keep = std::min<int64_t>(r, s.size());
  *b = Mat::Zero(bc.rows(), r);
  *a = Mat::Zero(r, ac.cols());
  b->leftCols(keep) = q_b * svd.matrixU().leftCols(keep) * s.head(keep).asDiagonal();
  a->topRows(keep) = (q_a * svd.matrixV().leftCols(keep)).transpose();
  double total = s.squaredNorm(), dropped = total - s.head(keep).squaredNorm();
  return total > 0 ? std::sqrt(std::max(0.0, dropped) / total) : 0.0;
}

Status CheckOptions(const std::vector<MergeInput>& in, const MergeOptions& o) {
  if (in.size() < 2) return InvalidArgumentError("merge needs at least two adapters");
  if (!o.weights.empty() && o.weights.size() != in.size()) {
    return InvalidArgumentError("--weights has " + std::to_string(o.weights.size()) + " values for " +
                                std::to_string(in.size()) + " adapters");
  }
  for (double w : o.weights) {
    if (!std::isfinite(w)) return InvalidArgumentError("a merge weight is not finite");
  }
  if (o.rank < 0 || o.rank > adapters::kMaxRank) return InvalidArgumentError("--rank " + std::to_string(o.rank) + " is out of range");
  if (o.method == MergeMethod::kLinear) {
    for (const auto& i : in) {
      if (i.adapter->rank != in[0].adapter->rank) {
        return InvalidArgumentError("linear merging needs equal ranks (" + std::to_string(in[0].adapter->rank) + " vs " +
                                    std::to_string(i.adapter->rank) + "); use --method cat or svd");
      }
      std::set<LoraTarget> t1(in[0].adapter->targets.begin(), in[0].adapter->targets.end()),
          t2(i.adapter->targets.begin(), i.adapter->targets.end());
      if (t1 != t2) return InvalidArgumentError("linear merging needs the same targets in every adapter; use --method cat or svd");
    }
  }
  return CheckSameBase(in);
}

}  // namespace

Result<MergeMethod> ParseMergeMethod(const std::string& name) {
  if (name == "cat") return MergeMethod::kCat;
  if (name == "linear") return MergeMethod::kLinear;
  if (name == "svd") return MergeMethod::kSvd;
  return InvalidArgumentError("unknown merge method '" + name + "' (known: cat, linear, svd)");
}

Result<Adapter> Merge(const std::vector<MergeInput>& in, const MergeOptions& o, MergeReport* report) {
  RETURN_IF_ERROR(CheckOptions(in, o));
  std::vector<double> w = o.weights;
  if (w.empty()) w.assign(in.size(), 1.0 / double(in.size()));
  const Adapter& first = *in[0].adapter;
  Adapter out;
  out.base_fingerprint = first.base_fingerprint;
  out.arch = first.arch;
  out.n_layers = first.n_layers;
  out.layers.resize(size_t(out.n_layers));
  int64_t max_rank = 0, sum_rank = 0;
  for (const auto& i : in) {
    max_rank = std::max(max_rank, i.adapter->rank);
    sum_rank += i.adapter->rank;
    for (auto t : i.adapter->targets) {
      if (!out.HasTarget(t)) out.targets.push_back(t);
      out.base_dims[size_t(t)] = i.adapter->base_dims[size_t(t)];
    }
  }
  std::sort(out.targets.begin(), out.targets.end());
  out.rank = o.method == MergeMethod::kCat ? sum_rank : o.method == MergeMethod::kLinear ? first.rank : (o.rank ? o.rank : max_rank);
  if (out.rank > adapters::kMaxRank) return InvalidArgumentError("the merged rank " + std::to_string(out.rank) + " is too large");
  out.alpha = double(out.rank);  // scale 1: the scales are folded into B
  MergeReport local;
  for (int64_t l = 0; l < out.n_layers; ++l) {
    for (auto t : out.targets) {
      const auto& d = out.base_dims[size_t(t)];
      Mat bc, ac, b, a;
      if (!StackedFactors(in, w, l, int(t), d, &bc, &ac)) continue;
      if (o.method == MergeMethod::kCat) {
        // Pad to the full summed rank so every pair has rank out.rank.
        b = Mat::Zero(d.out, out.rank);
        a = Mat::Zero(out.rank, d.in);
        b.leftCols(bc.cols()) = bc;
        a.topRows(ac.rows()) = ac;
      } else if (o.method == MergeMethod::kLinear) {
        b = Mat::Zero(d.out, out.rank);
        a = Mat::Zero(out.rank, d.in);
        // peft/tuners/lora/model.py _generalized_task_arithmetic_weighted_adapter:
        // √|w·s| on both sides, the sign on A.
        for (size_t k = 0; k < in.size(); ++k) {
          const auto& p = in[k].adapter->layers[size_t(l)][size_t(t)];
          if (p.empty()) continue;
          const double ws = w[k] * Scale(*in[k].adapter), root = std::sqrt(std::abs(ws));
          b += ToEigen(p.b) * root;
          a += ToEigen(p.a) * (ws < 0 ? -root : root);
        }
      } else {
        double err = TruncatedSvd(bc, ac, out.rank, &b, &a);
        std::string key = "layer " + std::to_string(l) + " target " + std::string(adapters::LoraTargetName(t));
        local.relative_error[key] = err;
        local.max_relative_error = std::max(local.max_relative_error, err);
      }
      out.layers[size_t(l)][size_t(t)] = {FromEigen(a), FromEigen(b)};
    }
  }
  // Provenance: the first input is the parent; all of them are recorded.
  out.parent_version = in[0].version_id;
  std::string sources;
  for (const auto& i : in) {
    sources += (sources.empty() ? "" : ",") + i.version_id;
    for (const auto& e : i.adapter->lineage) {
      if (std::find(out.lineage.begin(), out.lineage.end(), e) == out.lineage.end()) out.lineage.push_back(e);
    }
  }
  static const char* kNames[] = {"cat", "linear", "svd"};
  out.training_config["merge.method"] = kNames[int(o.method)];
  out.training_config["merge.sources"] = sources;
  std::string ws;
  for (double x : w) ws += (ws.empty() ? "" : ",") + std::to_string(x);
  out.training_config["merge.weights"] = ws;
  out.created_unix_ms = internal::NowUnixMs();
  Status valid = out.Validate();
  if (!valid.ok()) return valid.WithContext("merged adapter");
  if (report) *report = std::move(local);
  return out;
}

}  // namespace attune::export_
