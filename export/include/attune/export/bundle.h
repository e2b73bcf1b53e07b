// Attune bundles: the signed sync format (proto/attune/v1/bundle.proto).
//
// A bundle is a SignedEnvelope whose body holds a manifest (format version,
// version id, label, lineage, base model, training report summary, creation
// time, the SHA-256 of every tensor) and the adapter's payload exactly as the
// exporting registry stores it, so the version id (SHA-256 of the payload) is
// the same on every device. The envelope carries an Ed25519 signature by the
// exporting device's key (keys.h). Tombstones are signed the same way.
//
// Opening checks, in order: the envelope parses (DataLoss), its format
// version is known (Unsupported), the signer is this device or a trusted,
// unrevoked peer (FailedPrecondition), the signature verifies (DataLoss:
// "tampered or not signed by ..."), the payload hashes to the version id and
// every tensor to its digest (DataLoss naming the tensor), the adapter is
// valid (DataLoss). Every message starts with `name` (a path, usually).
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/export/keys.h"

namespace attune::export_ {

// The newest bundle layout this build writes and reads.
inline constexpr uint32_t kBundleFormatVersion = 1;
// Readers refuse larger files (OutOfRange) before parsing them.
inline constexpr size_t kMaxBundleBytes = size_t{1} << 30;

struct BundleInfo {
  std::string version_id;
  std::string label;
  std::vector<std::string> parent_versions;
  std::string trained_on_device;
  std::string signer_device_id;
  std::vector<std::string> event_lineage;
  std::string base_fingerprint;
  std::string base_arch;
  int64_t base_n_layers = 0;
  std::map<std::string, double> report;
  int64_t created_unix_ms = 0;
  int64_t rank = 0;
  std::vector<std::string> targets;
  uint64_t payload_bytes = 0;
};

struct BundleContents {
  BundleInfo info;
  std::string payload;  // AdapterPayload bytes (adapters/payload.h)
  adapters::Adapter adapter;
};

// Seals registry payload bytes into a bundle signed by `keys`. `label` and
// `trained_on_device` go into the manifest. DataLoss: `payload` does not
// decode.
Result<std::string> SealBundle(std::string_view payload, const std::string& label,
                               const std::string& trained_on_device, const KeyStore& keys);

// Verifies and opens a bundle (see the order of checks above).
Result<BundleContents> OpenBundle(std::string_view bytes, const std::string& name, const KeyStore& keys);

// Reads the file and OpenBundle()s it (plus NotFound, IoError, OutOfRange).
Result<BundleContents> ReadBundleFile(const std::string& path, const KeyStore& keys);

// True when `bytes` start like an Attune envelope of either kind (for format
// detection; proves nothing about validity).
bool LooksLikeEnvelope(std::string_view bytes);

struct Tombstone {
  std::vector<std::string> erased_versions;  // full version ids
  std::string reason;
  int64_t created_unix_ms = 0;
  std::string device_id;  // filled by OpenTombstone: the signer
};

Result<std::string> SealTombstone(const Tombstone& tombstone, const KeyStore& keys);
// Same checks as OpenBundle for the envelope and signature.
Result<Tombstone> OpenTombstone(std::string_view bytes, const std::string& name, const KeyStore& keys);

}  // namespace attune::export_
