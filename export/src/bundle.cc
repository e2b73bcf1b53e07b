#include "attune/export/bundle.h"

#include <algorithm>

#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "attune/v1/bundle.pb.h"

namespace attune::export_ {
namespace {

using attune::v1::SignedEnvelope;

// What the signature covers: a fixed context, the kind and the format version,
// then the body (see bundle.proto).
std::string SignedBytes(SignedEnvelope::Kind kind, uint32_t version, std::string_view body) {
  std::string m = "attune.v1.SignedEnvelope";
  m.push_back('\0');
  m += std::to_string(int(kind));
  m.push_back('\0');
  m += std::to_string(version);
  m.push_back('\0');
  m.append(body);
  return m;
}

Result<std::string> Seal(SignedEnvelope::Kind kind, const std::string& body, const KeyStore& keys) {
  SignedEnvelope env;
  env.set_format_version(kBundleFormatVersion);
  env.set_kind(kind);
  env.set_body(body);
  env.set_signer_device_id(keys.device().device_id);
  ASSIGN_OR_RETURN(std::string sig, keys.Sign(SignedBytes(kind, kBundleFormatVersion, body)));
  env.set_signature(sig);
  std::string out;
  if (!env.SerializeToString(&out)) return InternalError("cannot serialize a bundle envelope");
  return out;
}

const char* KindName(SignedEnvelope::Kind kind) { return kind == SignedEnvelope::BUNDLE ? "bundle" : "tombstone"; }

// Returns the verified body.
Result<std::string> Verify(std::string_view bytes, SignedEnvelope::Kind kind, const std::string& name,
                           const KeyStore& keys, std::string* signer) {
  if (bytes.size() > kMaxBundleBytes) {
    return OutOfRangeError(name + ": " + std::to_string(bytes.size()) + " bytes is more than the " +
                           std::to_string(kMaxBundleBytes) + "-byte limit");
  }
  SignedEnvelope env;
  if (!env.ParseFromArray(bytes.data(), int(bytes.size()))) {
    return DataLossError(name + ": not an Attune " + KindName(kind) + " (truncated or damaged)");
  }
  // Protocol buffers merge concatenated messages: a file with anything after
  // the envelope (two bundles, appended bytes) would parse as the last one.
  if (env.ByteSizeLong() != bytes.size()) {
    return DataLossError(name + ": " + std::to_string(bytes.size() - std::min(bytes.size(), env.ByteSizeLong())) +
                         " bytes after the " + KindName(kind) + " (two files joined, or damaged)");
  }
  if (env.format_version() == 0) return DataLossError(name + ": field format_version is missing (truncated or damaged?)");
  if (env.format_version() > kBundleFormatVersion) {
    return UnsupportedError(name + ": field format_version is " + std::to_string(env.format_version()) +
                            ", this build reads up to " + std::to_string(kBundleFormatVersion) +
                            " (hint: upgrade attune on this device)");
  }
  if (env.kind() != kind) {
    return InvalidArgumentError(name + ": field kind is " + std::to_string(int(env.kind())) + ", expected a " +
                                KindName(kind));
  }
  auto key = keys.AcceptedKey(env.signer_device_id());
  if (!key.ok()) return key.status().WithContext(name);
  if (!VerifyEd25519(*key, SignedBytes(kind, env.format_version(), env.body()), env.signature())) {
    return DataLossError(name + ": field signature does not verify: the " + KindName(kind) +
                         " was changed after signing or was not signed by device " + env.signer_device_id());
  }
  if (signer) *signer = env.signer_device_id();
  return std::string(env.body());
}

}  // namespace

bool LooksLikeEnvelope(std::string_view bytes) {
  // Field 1 (format_version, varint) comes first in every envelope we write.
  return bytes.size() > 2 && bytes[0] == 0x08;
}

Result<std::string> SealBundle(std::string_view payload, const std::string& label,
                               const std::string& trained_on_device, const KeyStore& keys) {
  ASSIGN_OR_RETURN(adapters::Adapter a, adapters::DecodePayload(payload, "payload of " + label));
  attune::v1::BundleBody body;
  auto* m = body.mutable_manifest();
  m->set_version_id(adapters::PayloadVersionId(payload));
  m->set_label(label);
  if (!a.parent_version.empty()) m->add_parent_versions(a.parent_version);
  m->set_trained_on_device(trained_on_device);
  for (const auto& e : a.lineage) m->add_event_lineage(e);
  m->set_base_fingerprint(a.base_fingerprint);
  m->set_base_arch(a.arch);
  m->set_base_n_layers(a.n_layers);
  for (const auto& [k, v] : a.metrics) (*m->mutable_report())[k] = v;
  m->set_created_unix_ms(a.created_unix_ms);
  m->set_rank(a.rank);
  for (auto t : a.targets) m->add_targets(std::string(adapters::LoraTargetName(t)));
  for (int64_t l = 0; l < a.n_layers; ++l) {
    for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
      const auto& p = a.layers[size_t(l)][size_t(t)];
      if (p.empty()) continue;
      for (bool is_b : {false, true}) {
        const auto& mat = is_b ? p.b : p.a;
        auto* d = m->add_tensors();
        d->set_name(adapters::TensorName(l, adapters::LoraTarget(t), is_b));
        d->set_sha256(Sha256Hex(std::string_view(reinterpret_cast<const char*>(mat.data.data()), mat.data.size() * 4)));
      }
    }
  }
  body.set_payload(std::string(payload));
  std::string body_bytes;
  if (!body.SerializeToString(&body_bytes)) return InternalError("cannot serialize a bundle body");
  return Seal(SignedEnvelope::BUNDLE, body_bytes, keys);
}

namespace {

// The manifest's tensor digests against the decoded tensors.
Status CheckDigests(const attune::v1::BundleManifest& m, const adapters::Adapter& a, const std::string& name) {
  std::map<std::string, std::string> want;
  for (const auto& d : m.tensors()) want[d.name()] = d.sha256();
  size_t seen = 0;
  for (int64_t l = 0; l < a.n_layers; ++l) {
    for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
      const auto& p = a.layers[size_t(l)][size_t(t)];
      if (p.empty()) continue;
      for (bool is_b : {false, true}) {
        const auto& mat = is_b ? p.b : p.a;
        std::string tn = adapters::TensorName(l, adapters::LoraTarget(t), is_b);
        auto it = want.find(tn);
        std::string got = Sha256Hex(std::string_view(reinterpret_cast<const char*>(mat.data.data()), mat.data.size() * 4));
        if (it == want.end() || it->second != got) {
          return DataLossError(name + ": tensor '" + tn + "' does not match the manifest's SHA-256");
        }
        ++seen;
      }
    }
  }
  if (seen != want.size()) return DataLossError(name + ": the manifest lists tensors the payload does not hold");
  return Status::Ok();
}

}  // namespace

Result<BundleContents> OpenBundle(std::string_view bytes, const std::string& name, const KeyStore& keys) {
  std::string signer;
  ASSIGN_OR_RETURN(std::string body_bytes, Verify(bytes, SignedEnvelope::BUNDLE, name, keys, &signer));
  attune::v1::BundleBody body;
  if (!body.ParseFromString(body_bytes)) return DataLossError(name + ": the signed body does not parse");
  const auto& m = body.manifest();
  BundleContents out;
  out.payload = body.payload();
  if (adapters::PayloadVersionId(out.payload) != m.version_id()) {
    return DataLossError(name + ": the payload does not hash to the manifest's version_id " + m.version_id());
  }
  auto a = adapters::DecodePayload(out.payload, name + " (payload)");
  if (!a.ok()) return a.status();
  out.adapter = std::move(a).value();
  RETURN_IF_ERROR(CheckDigests(m, out.adapter, name));
  BundleInfo& i = out.info;
  i.version_id = m.version_id();
  i.label = m.label();
  i.parent_versions.assign(m.parent_versions().begin(), m.parent_versions().end());
  i.trained_on_device = m.trained_on_device();
  i.signer_device_id = signer;
  i.event_lineage.assign(m.event_lineage().begin(), m.event_lineage().end());
  i.base_fingerprint = m.base_fingerprint();
  i.base_arch = m.base_arch();
  i.base_n_layers = m.base_n_layers();
  i.report.insert(m.report().begin(), m.report().end());
  i.created_unix_ms = m.created_unix_ms();
  i.rank = m.rank();
  i.targets.assign(m.targets().begin(), m.targets().end());
  i.payload_bytes = out.payload.size();
  return out;
}

Result<BundleContents> ReadBundleFile(const std::string& path, const KeyStore& keys) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return OpenBundle(bytes, path, keys);
}

Result<std::string> SealTombstone(const Tombstone& t, const KeyStore& keys) {
  attune::v1::TombstoneBody body;
  for (const auto& v : t.erased_versions) body.add_erased_versions(v);
  body.set_reason(t.reason);
  body.set_created_unix_ms(t.created_unix_ms);
  body.set_device_id(keys.device().device_id);
  std::string bytes;
  if (!body.SerializeToString(&bytes)) return InternalError("cannot serialize a tombstone");
  return Seal(SignedEnvelope::TOMBSTONE, bytes, keys);
}

Result<Tombstone> OpenTombstone(std::string_view bytes, const std::string& name, const KeyStore& keys) {
  std::string signer;
  ASSIGN_OR_RETURN(std::string body_bytes, Verify(bytes, SignedEnvelope::TOMBSTONE, name, keys, &signer));
  attune::v1::TombstoneBody body;
  if (!body.ParseFromString(body_bytes)) return DataLossError(name + ": the signed body does not parse");
  Tombstone t;
  t.erased_versions.assign(body.erased_versions().begin(), body.erased_versions().end());
  t.reason = body.reason();
  t.created_unix_ms = body.created_unix_ms();
  t.device_id = signer;
  return t;
}

}  // namespace attune::export_
