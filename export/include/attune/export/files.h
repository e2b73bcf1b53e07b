// One entry point per direction for `attune export` and `attune import`:
// format detection, reading any supported format, and exporting a registry
// version to any of them.
//
// Thread safety: free functions; the registry and key store are used
// according to their own contracts.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/export/base_model.h"
#include "attune/export/bundle.h"
#include "attune/export/keys.h"

namespace attune::export_ {

enum class AdapterFormat { kPeft, kGguf, kBundle };
std::string_view AdapterFormatName(AdapterFormat format);  // "peft", "gguf", "bundle"
// InvalidArgument listing the known names.
Result<AdapterFormat> ParseAdapterFormat(std::string_view name);

// A directory (or its adapter_config.json) is PEFT, a file starting with the
// GGUF magic is GGUF-LoRA, an Attune envelope is a bundle. NotFound when
// absent; InvalidArgument naming the path otherwise.
Result<AdapterFormat> DetectFormat(const std::string& path);

struct ImportedAdapter {
  AdapterFormat format = AdapterFormat::kBundle;
  adapters::Adapter adapter;
  std::optional<BundleInfo> bundle;  // for a bundle
};

// Reads `path` in whatever format it is. PEFT and GGUF need `base` (their
// files do not say which weights they were trained on; the adapter is stamped
// with base->info) and FailedPrecondition names the missing model otherwise.
// A bundle needs `keys` to verify its signer; when `base` is also given, an
// adapter for another base model is refused (FailedPrecondition).
Result<ImportedAdapter> ReadAdapter(const std::string& path, const BaseModel* base, const KeyStore* keys);

// Without a loaded base model: FailedPrecondition when the registry holds
// versions and none of them was trained for the adapter's base fingerprint
// (an adapter for another base model). OK for an empty registry.
Status CheckSameBaseAsRegistry(const adapters::Registry& registry, const adapters::Adapter& adapter);

// Adds an imported adapter to the registry as a candidate. A parent version
// unknown here is moved to training_config["import.parent_version"] (the
// registry requires known parents). Returns the local version id.
Result<std::string> AddImported(adapters::Registry& registry, adapters::Adapter adapter);

// Writes registry version `version` to `path` in `format`. PEFT and GGUF
// need `base`; a bundle needs `keys` (the signer). The adapter must fit
// `base` when given (FailedPrecondition). Nothing is left at `path` on
// failure. Returns the version id exported.
Result<std::string> ExportVersion(const adapters::Registry& registry, const std::string& version, AdapterFormat format,
                                  const BaseModel* base, const KeyStore* keys, const std::string& path);

}  // namespace attune::export_
