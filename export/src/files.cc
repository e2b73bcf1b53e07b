#include "attune/export/files.h"

#include <filesystem>

#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/export/gguf_lora.h"
#include "attune/export/peft.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;

Status NeedBase(const std::string& path, AdapterFormat f) {
  return FailedPreconditionError(path + ": a " + std::string(AdapterFormatName(f)) +
                                 " adapter does not name its base weights; the base model is needed (--model)");
}

}  // namespace

std::string_view AdapterFormatName(AdapterFormat format) {
  switch (format) {
    case AdapterFormat::kPeft: return "peft";
    case AdapterFormat::kGguf: return "gguf";
    case AdapterFormat::kBundle: return "bundle";
  }
  return "?";
}

Result<AdapterFormat> ParseAdapterFormat(std::string_view name) {
  if (name == "peft") return AdapterFormat::kPeft;
  if (name == "gguf") return AdapterFormat::kGguf;
  if (name == "bundle") return AdapterFormat::kBundle;
  return InvalidArgumentError("unknown format '" + std::string(name) + "' (known: peft, gguf, bundle)");
}

Result<AdapterFormat> DetectFormat(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFoundError(path + ": no such file or directory");
  if (fs::is_directory(path, ec) || fs::path(path).filename() == kPeftConfigFile) {
    if (fs::is_directory(path, ec) && !fs::exists(fs::path(path) / kPeftConfigFile, ec)) {
      return InvalidArgumentError(path + ": a directory without " + std::string(kPeftConfigFile) + " is not a PEFT adapter");
    }
    return AdapterFormat::kPeft;
  }
  ASSIGN_OR_RETURN(MappedFile f, MappedFile::Open(path));
  std::string_view head(reinterpret_cast<const char*>(f.data()), std::min<size_t>(f.size(), 8));
  if (head.substr(0, 4) == "GGUF") return AdapterFormat::kGguf;
  if (LooksLikeEnvelope(head)) return AdapterFormat::kBundle;
  return InvalidArgumentError(path + ": not a PEFT directory, GGUF-LoRA file or Attune bundle");
}

Result<ImportedAdapter> ReadAdapter(const std::string& path, const BaseModel* base, const KeyStore* keys) {
  ASSIGN_OR_RETURN(AdapterFormat format, DetectFormat(path));
  ImportedAdapter out;
  out.format = format;
  if (format == AdapterFormat::kBundle) {
    if (keys == nullptr) return FailedPreconditionError(path + ": verifying a bundle needs the device keys");
    ASSIGN_OR_RETURN(BundleContents b, ReadBundleFile(path, *keys));
    if (base != nullptr) RETURN_IF_ERROR(b.adapter.CheckCompatible(base->info).WithContext(path));
    out.adapter = std::move(b.adapter);
    out.bundle = std::move(b.info);
    return out;
  }
  if (base == nullptr) return NeedBase(path, format);
  if (format == AdapterFormat::kPeft) {
    ASSIGN_OR_RETURN(out.adapter, ReadPeft(path, *base));
  } else {
    ASSIGN_OR_RETURN(out.adapter, ReadGgufLora(path, *base));
  }
  return out;
}

Status CheckSameBaseAsRegistry(const adapters::Registry& registry, const adapters::Adapter& adapter) {
  auto versions = registry.List();
  if (versions.empty()) return Status::Ok();
  for (const auto& v : versions) {
    if (v.base_fingerprint == adapter.base_fingerprint) return Status::Ok();
  }
  return FailedPreconditionError("adapter was trained for base model " + adapter.base_fingerprint.substr(0, 12) + " (" +
                                 adapter.arch + "), which no version here uses (hint: maybe wrong base model? --model "
                                 "checks against a model file)");
}

Result<std::string> AddImported(adapters::Registry& registry, adapters::Adapter adapter) {
  if (!adapter.parent_version.empty() && !registry.Get(adapter.parent_version).ok()) {
    adapter.training_config["import.parent_version"] = adapter.parent_version;
    adapter.parent_version.clear();
  }
  return registry.Add(adapter);
}

Result<std::string> ExportVersion(const adapters::Registry& registry, const std::string& version, AdapterFormat format,
                                  const BaseModel* base, const KeyStore* keys, const std::string& path) {
  ASSIGN_OR_RETURN(std::string id, registry.Resolve(version));
  ASSIGN_OR_RETURN(adapters::VersionInfo info, registry.Get(id));
  if (format == AdapterFormat::kBundle) {
    if (keys == nullptr) return FailedPreconditionError("signing a bundle needs the device keys");
    ASSIGN_OR_RETURN(std::string payload, ReadFile(registry.PayloadPath(id)));
    if (adapters::PayloadVersionId(payload) != id) {
      return DataLossError(registry.PayloadPath(id) + ": payload does not hash to its version id");
    }
    ASSIGN_OR_RETURN(std::string bundle, SealBundle(payload, info.label(), keys->device().device_id, *keys));
    RETURN_IF_ERROR(WriteFileAtomic(path, bundle));
    return id;
  }
  ASSIGN_OR_RETURN(adapters::Adapter a, registry.Load(id));
  if (base == nullptr) return NeedBase(path, format);
  RETURN_IF_ERROR(a.CheckCompatible(base->info));
  if (format == AdapterFormat::kPeft) {
    RETURN_IF_ERROR(WritePeft(a, *base, path));
  } else {
    RETURN_IF_ERROR(WriteGgufLora(a, *base, path));
  }
  return id;
}

}  // namespace attune::export_
