#include "attune/adapters/payload.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>
#include <tuple>

#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "attune/v1/adapter.pb.h"

namespace attune::adapters {
namespace {

static_assert(std::endian::native == std::endian::little, "payload tensors are little-endian float32");

void AddTensor(v1::AdapterPayload& payload, int64_t layer, LoraTarget target, bool is_b, const Matrix& m) {
  v1::AdapterTensor* t = payload.add_tensors();
  t->set_layer(layer);
  t->set_target(std::string(LoraTargetName(target)));
  t->set_matrix(is_b ? "b" : "a");
  for (int64_t d : m.shape) t->add_shape(d);
  t->set_data(reinterpret_cast<const char*>(m.data.data()), m.data.size() * sizeof(float));
  t->set_sha256(Sha256Hex(t->data()));
}

void FillManifest(const Adapter& a, size_t tensor_count, v1::AdapterManifest& m) {
  m.set_base_fingerprint(a.base_fingerprint);
  m.set_arch(a.arch);
  m.set_n_layers(a.n_layers);
  for (LoraTarget t : a.targets) {
    v1::AdapterTargetDims* d = m.add_base_dims();
    d->set_target(std::string(LoraTargetName(t)));
    d->set_in_features(a.base_dims[static_cast<int>(t)].in);
    d->set_out_features(a.base_dims[static_cast<int>(t)].out);
    m.add_targets(std::string(LoraTargetName(t)));
  }
  m.set_rank(a.rank);
  m.set_alpha(a.alpha);
  m.set_rslora(a.rslora);
  for (const auto& [k, v] : a.training_config) (*m.mutable_training_config())[k] = v;
  for (const auto& [k, v] : a.metrics) (*m.mutable_metrics())[k] = v;
  for (const auto& e : a.lineage) m.add_lineage(e);
  m.set_parent_version(a.parent_version);
  m.set_created_unix_ms(a.created_unix_ms);
  m.set_tensor_count(static_cast<int64_t>(tensor_count));
  if (!a.scope.empty()) {
    v1::AdapterScope* sc = m.mutable_scope();
    sc->set_layer(a.scope.layer);
    sc->mutable_mean()->Add(a.scope.mean.begin(), a.scope.mean.end());
    sc->mutable_scale()->Add(a.scope.scale.begin(), a.scope.scale.end());
    sc->mutable_weight()->Add(a.scope.weight.begin(), a.scope.weight.end());
    sc->set_bias(a.scope.bias);
    sc->set_fitted_in(a.scope.fitted_in);
    sc->set_fitted_out(a.scope.fitted_out);
    sc->set_misplaced(a.scope.misplaced);
  }
}

Status ReadManifest(const v1::AdapterManifest& m, Adapter& a) {
  a.base_fingerprint = m.base_fingerprint();
  a.arch = m.arch();
  a.n_layers = m.n_layers();
  a.rank = m.rank();
  a.alpha = m.alpha();
  a.rslora = m.rslora();
  for (const std::string& name : m.targets()) {
    ASSIGN_OR_RETURN(LoraTarget t, ParseLoraTarget(name));
    a.targets.push_back(t);
  }
  for (const auto& d : m.base_dims()) {
    ASSIGN_OR_RETURN(LoraTarget t, ParseLoraTarget(d.target()));
    a.base_dims[static_cast<int>(t)] = TargetDims{d.in_features(), d.out_features()};
  }
  a.training_config.insert(m.training_config().begin(), m.training_config().end());
  a.metrics.insert(m.metrics().begin(), m.metrics().end());
  a.lineage.assign(m.lineage().begin(), m.lineage().end());
  a.parent_version = m.parent_version();
  a.created_unix_ms = m.created_unix_ms();
  if (m.has_scope()) {
    const v1::AdapterScope& sc = m.scope();
    a.scope.layer = sc.layer();
    a.scope.mean.assign(sc.mean().begin(), sc.mean().end());
    a.scope.scale.assign(sc.scale().begin(), sc.scale().end());
    a.scope.weight.assign(sc.weight().begin(), sc.weight().end());
    a.scope.bias = sc.bias();
    a.scope.fitted_in = sc.fitted_in();
    a.scope.fitted_out = sc.fitted_out();
    a.scope.misplaced = sc.misplaced();
  }
  if (a.n_layers < 1 || a.n_layers > kMaxLayers) {
    return InvalidArgumentError("n_layers " + std::to_string(a.n_layers) + " is out of range");
  }
  a.layers.resize(static_cast<size_t>(a.n_layers));
  return Status::Ok();
}

Status ReadTensor(const v1::AdapterTensor& t, Adapter& a, std::set<std::tuple<int64_t, int, bool>>& seen) {
  ASSIGN_OR_RETURN(LoraTarget target, ParseLoraTarget(t.target()));
  if (t.matrix() != "a" && t.matrix() != "b") return InvalidArgumentError("matrix '" + t.matrix() + "' is not a or b");
  bool is_b = t.matrix() == "b";
  std::string name = TensorName(t.layer(), target, is_b);
  if (t.layer() < 0 || t.layer() >= a.n_layers) return InvalidArgumentError(name + ": layer is out of range");
  if (!seen.insert({t.layer(), static_cast<int>(target), is_b}).second) {
    return InvalidArgumentError(name + ": appears twice");
  }
  if (Sha256Hex(t.data()) != t.sha256()) return InvalidArgumentError(name + ": checksum mismatch");
  if (t.data().size() % sizeof(float) != 0) return InvalidArgumentError(name + ": data is not whole float32 values");
  Matrix m;
  m.shape.assign(t.shape().begin(), t.shape().end());
  m.data.resize(t.data().size() / sizeof(float));
  if (!m.data.empty()) std::memcpy(m.data.data(), t.data().data(), t.data().size());
  LoraPair& pair = a.layers[t.layer()][static_cast<int>(target)];
  (is_b ? pair.b : pair.a) = std::move(m);
  return Status::Ok();
}

}  // namespace

Result<std::string> EncodePayload(const Adapter& adapter) {
  RETURN_IF_ERROR(adapter.Validate());
  v1::AdapterPayload payload;
  payload.set_format_version(adapter.scope.empty() ? kUnscopedPayloadFormatVersion : kPayloadFormatVersion);
  for (int64_t l = 0; l < adapter.n_layers; ++l) {
    for (int i = 0; i < kNumLoraTargets; ++i) {
      const LoraPair& p = adapter.layers[l][i];
      if (p.empty()) continue;
      AddTensor(payload, l, static_cast<LoraTarget>(i), false, p.a);
      AddTensor(payload, l, static_cast<LoraTarget>(i), true, p.b);
    }
  }
  FillManifest(adapter, static_cast<size_t>(payload.tensors_size()), *payload.mutable_manifest());
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    if (!payload.SerializeToCodedStream(&cos)) return InternalError("adapter payload failed to serialize");
  }
  if (out.size() > kMaxPayloadBytes) {
    return OutOfRangeError("adapter payload is " + std::to_string(out.size()) + " bytes, the limit is " +
                           std::to_string(kMaxPayloadBytes));
  }
  return out;
}

Result<Adapter> DecodePayload(std::string_view bytes, std::string_view name) {
  const std::string where(name);
  if (bytes.size() > kMaxPayloadBytes) {
    return OutOfRangeError(where + ": adapter payload is " + std::to_string(bytes.size()) + " bytes, the limit is " +
                           std::to_string(kMaxPayloadBytes));
  }
  v1::AdapterPayload payload;
  if (!payload.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLossError(where + ": not an adapter payload, or truncated (protobuf parse failed)");
  }
  if (payload.format_version() == 0) return DataLossError(where + ": adapter payload has no format_version");
  if (payload.format_version() > kPayloadFormatVersion) {
    return UnsupportedError(where + ": adapter payload format_version " + std::to_string(payload.format_version()) +
                            " is newer than this build reads (" + std::to_string(kPayloadFormatVersion) +
                            ") (hint: upgrade attune)");
  }
  if (!payload.has_manifest()) return DataLossError(where + ": adapter payload has no manifest");
  if (payload.manifest().tensor_count() != payload.tensors_size()) {
    return DataLossError(where + ": manifest lists " + std::to_string(payload.manifest().tensor_count()) +
                         " tensors, the file holds " + std::to_string(payload.tensors_size()) + " (truncated?)");
  }
  Adapter a;
  Status s = ReadManifest(payload.manifest(), a);
  std::set<std::tuple<int64_t, int, bool>> seen;
  for (int i = 0; s.ok() && i < payload.tensors_size(); ++i) s = ReadTensor(payload.tensors(i), a, seen);
  if (s.ok()) s = a.Validate();
  if (!s.ok()) return DataLossError(where + ": " + s.message());
  return a;
}

std::string PayloadVersionId(std::string_view bytes) { return Sha256Hex(bytes); }

std::string ShortVersion(std::string_view id) { return std::string(id.substr(0, 12)); }

Result<Adapter> ReadPayloadFile(const std::string& path, std::string_view expected_id, std::string* id) {
  // Refuse an oversized file before reading it, not after.
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxPayloadBytes) {
    return OutOfRangeError(path + ": adapter payload is " + std::to_string(size) + " bytes, the limit is " +
                           std::to_string(kMaxPayloadBytes));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  const std::string actual = PayloadVersionId(bytes);
  if (!expected_id.empty() && actual != expected_id) {
    return DataLossError(path + ": content does not hash to its version id " + std::string(expected_id) +
                         " (corrupt or truncated)");
  }
  ASSIGN_OR_RETURN(Adapter adapter, DecodePayload(bytes, path));
  if (id != nullptr) *id = actual;
  return adapter;
}

Result<std::string> WritePayloadFile(const std::string& path, const Adapter& adapter) {
  ASSIGN_OR_RETURN(std::string bytes, EncodePayload(adapter));
  RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  return PayloadVersionId(bytes);
}

}  // namespace attune::adapters
