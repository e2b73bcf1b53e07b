// attune export VERSION --format peft|gguf|bundle -o PATH | import PATH [--force]
//      | merge V1 V2 ... --method cat|linear|svd [--weights w,..] [--rank R]
//      | sync DIR | keys show|ls|trust FILE|revoke ID
#include <iostream>
#include <memory>
#include <sstream>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/export/files.h"
#include "attune/export/keys.h"
#include "attune/export/merge.h"
#include "attune/export/sync.h"
#include "cli/cli_common.h"
#ifdef ATTUNE_HAVE_RUNTIME_CLI
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"
#endif

namespace attune::cli {
namespace {

using export_::AdapterFormat;
using export_::BaseModel;
using export_::KeyStore;
using nlohmann::json;

struct ExportFlags {
  std::string model;  // --model; empty: the default model when one is needed
  std::string version, format, output, path, dir, method = "cat", weights;
  std::vector<std::string> versions;
  int64_t rank = 0;
  bool force = false, no_merge = false;
};

std::string DataDir(const GlobalOptions& g) { return ResolveDataDir(g.data_dir); }

Result<std::unique_ptr<KeyStore>> OpenKeys(const GlobalOptions& g) { return KeyStore::Open(DataDir(g) + "/keys"); }

Result<std::unique_ptr<adapters::Registry>> OpenRegistry(const GlobalOptions& g, bool write,
                                                         const BaseModel* base = nullptr) {
  adapters::RegistryOptions o;
  o.read_only = !write;
  if (base) o.base_model = base->info;
  return adapters::Registry::Open(o, DataDir(g) + "/adapters");
}

// The base model's shapes, fingerprint and head counts, from --model or the
// default model.
Result<BaseModel> LoadBase(const GlobalOptions& g, const std::string& model) {
#ifdef ATTUNE_HAVE_RUNTIME_CLI
  ASSIGN_OR_RETURN(std::string path, runtime::ResolveModelPath(model));
  runtime::LoadOptions lo;
  lo.allow_missing_tokenizer = true;
  ASSIGN_OR_RETURN(auto m, runtime::Model::Load(path, lo));
  BaseModel b;
  b.info = runtime::BaseInfo(*m);
  b.n_heads = m->config().n_heads;
  b.n_kv_heads = m->config().n_kv_heads;
  b.name_or_path = path;
  return b;
#else
  return UnsupportedError("this build of attune has no model runtime; PEFT and GGUF need the base model");
#endif
}

int Export(const GlobalOptions& g, const ExportFlags& f) {
  auto format = export_::ParseAdapterFormat(f.format);
  if (!format.ok()) return PrintError(format.status().WithContext("--format"));
  auto reg = OpenRegistry(g, false);
  if (!reg.ok()) return PrintError(reg.status());
  std::optional<BaseModel> base;
  std::unique_ptr<KeyStore> keys;
  if (*format == AdapterFormat::kBundle) {
    auto k = OpenKeys(g);
    if (!k.ok()) return PrintError(k.status());
    keys = std::move(k).value();
  } else {
    auto b = LoadBase(g, f.model);
    if (!b.ok()) return PrintError(b.status());
    base = std::move(b).value();
  }
  auto id = export_::ExportVersion(**reg, f.version, *format, base ? &*base : nullptr, keys.get(), f.output);
  if (!id.ok()) return PrintError(id.status().WithContext("export " + f.version));
  // PEFT and GGUF-LoRA files hold the weights only, not the scope.
  bool scope_dropped = false;
  if (*format != AdapterFormat::kBundle) {
    auto a = (*reg)->Load(*id);
    scope_dropped = a.ok() && !a->scope.empty();
    if (scope_dropped) {
      std::cerr << "note: " << (*reg)->Label(*id) << " has a scope (docs/adapters.md); a " << f.format
                << " file holds its weights only, which the tools that load it apply to every request\n";
    }
  }
  if (g.json) {
    PrintJson({{"version", *id},
               {"label", (*reg)->Label(*id)},
               {"format", f.format},
               {"path", f.output},
               {"scope_dropped", scope_dropped}});
  } else {
    std::cout << "exported " << (*reg)->Label(*id) << " (" << adapters::ShortVersion(*id) << ") as " << f.format
              << " to " << f.output << "\n";
  }
  return kExitOk;
}

int Import(const GlobalOptions& g, const ExportFlags& f) {
  auto format = export_::DetectFormat(f.path);
  if (!format.ok()) return PrintError(format.status());
  std::optional<BaseModel> base;
  if (*format != AdapterFormat::kBundle || !f.model.empty()) {
    auto b = LoadBase(g, f.model);
    if (!b.ok()) return PrintError(b.status());
    base = std::move(b).value();
  }
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  auto in = export_::ReadAdapter(f.path, base ? &*base : nullptr, keys->get());
  if (!in.ok()) return PrintError(in.status());
  auto reg = OpenRegistry(g, true, base ? &*base : nullptr);
  if (!reg.ok()) return PrintError(reg.status());
  if (!base) {
    Status same = export_::CheckSameBaseAsRegistry(**reg, in->adapter);
    if (!same.ok()) return PrintError(same.WithContext(f.path));
  }
  auto id = export_::AddImported(**reg, std::move(in->adapter));
  if (!id.ok()) return PrintError(id.status().WithContext(f.path));
  std::optional<adapters::PromoteResult> promoted;
  if (f.force) {
    auto p = (*reg)->Promote(*id, std::nullopt, true);
    if (!p.ok()) return PrintError(p.status());
    promoted = *p;
  }
  const std::string label = (*reg)->Label(*id);
  if (g.json) {
    json j = {{"version", *id}, {"label", label}, {"format", std::string(AdapterFormatName(in->format))},
              {"promoted", promoted.has_value()}};
    if (in->bundle) j["signer"] = in->bundle->signer_device_id;
    PrintJson(j);
  } else {
    std::cout << "imported " << f.path << " (" << AdapterFormatName(in->format) << ") as " << label << " ("
              << adapters::ShortVersion(*id) << ")" << (promoted ? ", promoted with --force" : ", a candidate")
              << "\n";
    if (!promoted) std::cout << "next: attune adapters promote " << label << "\n";
  }
  return kExitOk;
}

Result<std::vector<double>> ParseWeights(const std::string& s) {
  std::vector<double> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0') return InvalidArgumentError("--weights: '" + item + "' is not a number");
    out.push_back(v);
  }
  return out;
}

int Merge(const GlobalOptions& g, const ExportFlags& f) {
  export_::MergeOptions o;
  auto method = export_::ParseMergeMethod(f.method);
  if (!method.ok()) return PrintError(method.status().WithContext("--method"));
  o.method = *method;
  o.rank = f.rank;
  if (!f.weights.empty()) {
    auto w = ParseWeights(f.weights);
    if (!w.ok()) return PrintError(w.status());
    o.weights = *w;
  }
  auto reg = OpenRegistry(g, true);
  if (!reg.ok()) return PrintError(reg.status());
  std::vector<adapters::Adapter> loaded;
  std::vector<std::string> ids;
  for (const auto& v : f.versions) {
    auto id = (*reg)->Resolve(v);
    if (!id.ok()) return PrintError(id.status());
    auto a = (*reg)->Load(*id);
    if (!a.ok()) return PrintError(a.status());
    loaded.push_back(std::move(a).value());
    ids.push_back(*id);
  }
  std::vector<export_::MergeInput> in;
  for (size_t i = 0; i < loaded.size(); ++i) in.push_back({&loaded[i], ids[i]});
  export_::MergeReport report;
  auto merged = export_::Merge(in, o, &report);
  if (!merged.ok()) return PrintError(merged.status());
  auto id = (*reg)->Add(*merged);
  if (!id.ok()) return PrintError(id.status());
  if (g.json) {
    PrintJson({{"version", *id}, {"label", (*reg)->Label(*id)}, {"method", f.method}, {"rank", merged->rank},
               {"max_relative_error", report.max_relative_error}, {"relative_error", report.relative_error}});
  } else {
    std::cout << "merged into candidate " << (*reg)->Label(*id) << " (" << adapters::ShortVersion(*id) << "), rank "
              << merged->rank;
    if (o.method == export_::MergeMethod::kSvd) std::cout << ", max relative error " << report.max_relative_error;
    std::cout << "\n";
  }
  return kExitOk;
}

int Sync(const GlobalOptions& g, const ExportFlags& f) {
  std::optional<BaseModel> base;
  if (!f.model.empty()) {
    auto b = LoadBase(g, f.model);
    if (!b.ok()) return PrintError(b.status());
    base = std::move(b).value();
  }
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  auto reg = OpenRegistry(g, true, base ? &*base : nullptr);
  if (!reg.ok()) return PrintError(reg.status());
  export_::SyncOptions o;
  if (base) o.base_model = base->info;
  o.merge_diverged = !f.no_merge;
  auto rep = export_::Sync(**reg, **keys, f.dir, DataDir(g) + "/sync", o);
  if (!rep.ok()) return PrintError(rep.status());
  if (g.json) {
    json imported = json::array(), refused = json::array();
    for (const auto& i : rep->imported) {
      imported.push_back({{"origin", i.origin_id}, {"version", i.local_id}, {"label", (*reg)->Label(i.local_id)},
                          {"device", i.device_id}, {"origin_label", i.label}});
    }
    for (const auto& r : rep->refused) refused.push_back({{"path", r.path}, {"reason", r.reason}});
    PrintJson({{"device", (*keys)->device().device_id}, {"exported", rep->exported}, {"imported", imported},
               {"merged", rep->merged}, {"erased", rep->erased}, {"notes", rep->notes}, {"refused", refused},
               {"tombstones_written", rep->tombstones_out}});
    return kExitOk;
  }
  std::cout << "sync " << f.dir << " as device " << (*keys)->device().device_id << ": exported "
            << rep->exported.size() << ", imported " << rep->imported.size() << ", merged " << rep->merged.size()
            << ", erased " << rep->erased.size() << ", refused " << rep->refused.size() << "\n";
  for (const auto& i : rep->imported) {
    std::cout << "  imported " << (*reg)->Label(i.local_id) << " (" << i.label << " of device " << i.device_id
              << "), a candidate\n";
  }
  for (const auto& m : rep->merged) std::cout << "  merged diverged versions into candidate " << (*reg)->Label(m) << "\n";
  for (const auto& n : rep->notes) std::cout << "  " << n << "\n";
  for (const auto& r : rep->refused) std::cout << "  refused " << r.reason << "\n";
  return kExitOk;
}

int KeysShow(const GlobalOptions& g) {
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  const auto& d = (*keys)->device();
  if (g.json) {
    PrintJson({{"device_id", d.device_id}, {"public_key", d.line()}, {"file", (*keys)->dir() + "/device.pub"}});
  } else {
    std::cout << d.line() << "\n";
  }
  return kExitOk;
}

int KeysLs(const GlobalOptions& g) {
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  json peers = json::array();
  for (const auto& p : (*keys)->List()) peers.push_back({{"device_id", p.device_id}, {"revoked", p.revoked}});
  if (g.json) {
    PrintJson({{"device_id", (*keys)->device().device_id}, {"peers", peers}});
    return kExitOk;
  }
  std::cout << (*keys)->device().device_id << "  this device\n";
  for (const auto& p : (*keys)->List()) std::cout << p.device_id << "  " << (p.revoked ? "revoked" : "trusted") << "\n";
  return kExitOk;
}

int KeysTrust(const GlobalOptions& g, const std::string& file) {
  auto text = file == "-" ? Result<std::string>(std::string(std::istreambuf_iterator<char>(std::cin), {})) : ReadFile(file);
  if (!text.ok()) return PrintError(text.status());
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  auto k = (*keys)->Trust(*text, file);
  if (!k.ok()) return PrintError(k.status());
  if (g.json) {
    PrintJson({{"device_id", k->device_id}, {"trusted", true}});
  } else {
    std::cout << "trusting device " << k->device_id << "\n";
  }
  return kExitOk;
}

int KeysRevoke(const GlobalOptions& g, const std::string& id) {
  auto keys = OpenKeys(g);
  if (!keys.ok()) return PrintError(keys.status());
  Status s = (*keys)->Revoke(id);
  if (!s.ok()) return PrintError(s);
  if (g.json) {
    PrintJson({{"device_id", id}, {"revoked", true}});
  } else {
    std::cout << "revoked device " << id << ": its bundles and tombstones are refused from now on\n";
  }
  return kExitOk;
}

void AddModelFlag(CLI::App* cmd, ExportFlags& f,
                  const char* help = "Base model: GGUF file or Hugging Face directory (default: the cached default model)") {
  cmd->add_option("--model", f.model, help);
}

}  // namespace

Status RecordErasureForSync(const GlobalOptions& g, const std::vector<std::string>& versions, const std::string& reason) {
  if (versions.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(auto keys, OpenKeys(g));
  return export_::RecordErasure(*keys, DataDir(g) + "/sync", versions, reason).status();
}

void AddExportCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static ExportFlags f;

  CLI::App* exp = app.add_subcommand("export", "Write an adapter version as PEFT, GGUF-LoRA or a signed bundle");
  AddCommonFlags(exp, g);
  AddModelFlag(exp, f);
  exp->add_option("version", f.version, "vN, an id or an id prefix")->required();
  exp->add_option("--format", f.format, "peft (directory), gguf (file) or bundle (file)")->required();
  exp->add_option("-o,--output", f.output, "Where to write")->required();
  exp->callback(Run(r, [&g] { return Export(g, f); }));

  CLI::App* imp = app.add_subcommand("import", "Add a PEFT directory, GGUF-LoRA file or bundle as a candidate");
  AddCommonFlags(imp, g);
  AddModelFlag(imp, f,
               "Base model; needed for PEFT and GGUF (default: the cached default model), optional for bundles");
  imp->add_option("path", f.path, "PEFT directory, GGUF-LoRA file or .bundle")->required();
  imp->add_flag("--force", f.force, "Promote it without the gate (recorded in the history)");
  imp->callback(Run(r, [&g] { return Import(g, f); }));

  CLI::App* merge = app.add_subcommand("merge", "Merge adapter versions into one candidate");
  AddCommonFlags(merge, g);
  merge->add_option("versions", f.versions, "Two or more versions")->required()->expected(2, -1);
  merge->add_option("--method", f.method, "cat (exact), linear (PEFT's) or svd (default: cat)");
  merge->add_option("--weights", f.weights, "Comma-separated weights, one per version (default: 1/n each)");
  merge->add_option("--rank", f.rank, "Rank of the svd merge (default: the largest input rank)");
  merge->callback(Run(r, [&g] { return Merge(g, f); }));

  CLI::App* sync = app.add_subcommand("sync", "Exchange adapters with this user's other devices through DIR");
  AddCommonFlags(sync, g);
  AddModelFlag(sync, f,
               "Refuse bundles that do not fit this base model (default: refuse base models no local version uses)");
  sync->add_option("dir", f.dir, "A folder the devices share")->required();
  sync->add_flag("--no-merge", f.no_merge, "Do not merge versions that diverged from a common parent");
  sync->callback(Run(r, [&g] { return Sync(g, f); }));

  CLI::App* keys = app.add_subcommand("keys", "This device's signing key and the keys of trusted devices");
  keys->require_subcommand(1);
  static std::string arg;
  CLI::App* show = keys->add_subcommand("show", "Print this device's public key line (give it to your other devices)");
  AddCommonFlags(show, g);
  show->callback(Run(r, [&g] { return KeysShow(g); }));
  CLI::App* ls = keys->add_subcommand("ls", "List trusted and revoked devices");
  AddCommonFlags(ls, g);
  ls->callback(Run(r, [&g] { return KeysLs(g); }));
  CLI::App* trust = keys->add_subcommand("trust", "Trust the device whose public key line is in FILE (- for stdin)");
  AddCommonFlags(trust, g);
  trust->add_option("file", arg, "A file holding `attune keys show` output of the other device")->required();
  trust->callback(Run(r, [&g] { return KeysTrust(g, arg); }));
  CLI::App* revoke = keys->add_subcommand("revoke", "Stop trusting a device");
  AddCommonFlags(revoke, g);
  revoke->add_option("id", arg, "Device id (see keys ls)")->required();
  revoke->callback(Run(r, [&g] { return KeysRevoke(g, arg); }));
}

}  // namespace attune::cli
