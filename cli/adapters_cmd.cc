// attune adapters ls | show V | history | promote V [--force] | rollback [V]
//                | pin V | unpin V | gc | repair
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/replay/store.h"
#include "cli/cli_common.h"
#ifdef ATTUNE_HAVE_RUNTIME_CLI
#include "attune/trainer/trainer.h"
#endif

namespace attune::cli {
namespace {

using adapters::Registry;
using adapters::VersionInfo;
using nlohmann::json;

std::string Iso(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string RegistryDir(const GlobalOptions& g) { return ResolveDataDir(g.data_dir) + "/adapters"; }

// No command here creates a registry: adapters arrive from training, which
// creates it. A failed command must not leave an empty registry behind.
Result<std::unique_ptr<Registry>> OpenRegistry(const GlobalOptions& g, bool write) {
  adapters::RegistryOptions o;
  o.read_only = !write;
  o.create_if_missing = false;
  return Registry::Open(o, RegistryDir(g));
}

// Problems that make versions unusable fail the command after its output:
// a listing that looks fine must not hide a missing payload.
int ReportErrors(const Registry& r) {
  const auto errors = r.report().errors;
  if (errors.empty()) return kExitOk;
  for (size_t i = 1; i < errors.size(); ++i) std::cerr << "attune: error: " << errors[i] << "\n";
  return PrintError(
      DataLossError("adapter registry '" + r.dir() + "': " + errors[0] + " (hint: attune adapters repair)"));
}

// The metrics `ls` shows, in this order, when present.
const char* const kKeyMetrics[] = {adapters::kMetricNewLoss, adapters::kMetricReplayLoss, adapters::kMetricForgettingKl,
                                   "train.loss"};

json VersionJson(const Registry& reg, const VersionInfo& v) {
  json targets = json::array();
  for (auto t : v.targets) targets.push_back(std::string(adapters::LoraTargetName(t)));
  return json{{"id", v.id},
              {"label", v.label()},
              {"state", std::string(adapters::VersionStateName(v.state))},
              {"active", v.id == reg.Active()},
              {"reason", v.reason},
              {"parent", v.parent_version},
              {"parent_label", v.parent_version.empty() ? "" : reg.Label(v.parent_version)},
              {"created", Iso(v.created_unix_ms)},
              {"added", Iso(v.added_unix_ms)},
              {"pinned", v.pinned},
              {"rank", v.rank},
              {"targets", targets},
              {"payload_bytes", v.payload_bytes},
              {"metrics", v.metrics}};
}

json HistoryJson(const Registry& reg, const adapters::HistoryEntry& h) {
  return json{{"seq", h.seq},
              {"time", Iso(h.time_unix_ms)},
              {"from", h.from_version},
              {"from_label", reg.Label(h.from_version)},
              {"to", h.to_version},
              {"to_label", reg.Label(h.to_version)},
              {"cause", std::string(adapters::ActivationCauseName(h.cause))},
              {"note", h.note}};
}

int Ls(const GlobalOptions& g) {
  auto reg = OpenRegistry(g, false);
  if (!reg.ok()) return PrintError(reg.status());
  const Registry& r = **reg;
  if (g.json) {
    json list = json::array();
    for (const auto& v : r.List()) list.push_back(VersionJson(r, v));
    PrintJson(json{{"active", r.Active()}, {"versions", list}, {"errors", r.report().errors}});
    return ReportErrors(r);
  }
  if (r.List().empty()) {
    std::cout << "no adapters in " << r.dir() << "\n";
    return ReportErrors(r);
  }
  std::printf("  %-5s %-12s %-9s %-20s %-6s %s\n", "VER", "ID", "STATE", "CREATED", "PARENT", "METRICS");
  for (const auto& v : r.List()) {
    std::string metrics;
    for (const char* k : kKeyMetrics) {
      auto it = v.metrics.find(k);
      if (it != v.metrics.end()) metrics += (metrics.empty() ? "" : " ") + std::string(k) + "=" + Num(it->second);
    }
    std::printf("%c %-5s %-12s %-9s %-20s %-6s %s%s\n", v.id == r.Active() ? '*' : ' ', v.label().c_str(),
                adapters::ShortVersion(v.id).c_str(), std::string(adapters::VersionStateName(v.state)).c_str(),
                Iso(v.created_unix_ms).c_str(), v.parent_version.empty() ? "-" : r.Label(v.parent_version).c_str(),
                metrics.c_str(), v.pinned ? " [pinned]" : "");
  }
  return ReportErrors(r);
}

int Show(const GlobalOptions& g, const std::string& version) {
  auto reg = OpenRegistry(g, false);
  if (!reg.ok()) return PrintError(reg.status());
  const Registry& r = **reg;
  auto info = r.Get(version);
  if (!info.ok()) return PrintError(info.status());
  auto adapter = r.Load(info->id);
  if (!adapter.ok()) return PrintError(adapter.status());
  json j = VersionJson(r, *info);
  j["base_fingerprint"] = adapter->base_fingerprint;
  j["arch"] = adapter->arch;
  j["n_layers"] = adapter->n_layers;
  j["alpha"] = adapter->alpha;
  j["rslora"] = adapter->rslora;
  j["parameters"] = adapter->ParameterCount();
  j["training_config"] = adapter->training_config;
  j["lineage"] = adapter->lineage;
  json history = json::array();
  for (const auto& h : r.History()) {
    if (h.from_version == info->id || h.to_version == info->id) history.push_back(HistoryJson(r, h));
  }
  j["history"] = history;
  if (g.json) {
    PrintJson(j);
    return kExitOk;
  }
  std::cout << info->label() << "  " << info->id << (j["active"].get<bool>() ? "  (active)" : "") << "\n"
            << "  state:     " << j["state"].get<std::string>()
            << (info->reason.empty() ? "" : " (" + info->reason + ")") << "\n"
            << "  created:   " << Iso(info->created_unix_ms) << "\n"
            << "  parent:    " << (info->parent_version.empty() ? "-" : r.Label(info->parent_version)) << "\n"
            << "  base:      " << adapter->arch << " " << adapters::ShortVersion(adapter->base_fingerprint) << ", "
            << adapter->n_layers << " layers\n"
            << "  lora:      rank " << adapter->rank << ", alpha " << adapter->alpha
            << (adapter->rslora ? " (rsLoRA)" : "") << ", targets";
  for (auto t : adapter->targets) std::cout << " " << adapters::LoraTargetName(t);
  std::cout << ", " << adapter->ParameterCount() << " parameters\n"
            << "  pinned:    " << (info->pinned ? "yes" : "no") << "\n"
            << "  lineage:   " << adapter->lineage.size() << " entries\n";
  for (const auto& [k, v] : adapter->metrics) std::cout << "  metric     " << k << " = " << Num(v) << "\n";
  for (const auto& [k, v] : adapter->training_config) std::cout << "  config     " << k << " = " << v << "\n";
  for (const auto& h : history) {
    std::cout << "  history    " << h["time"].get<std::string>() << " " << h["from_label"].get<std::string>() << " -> "
              << h["to_label"].get<std::string>() << " (" << h["cause"].get<std::string>() << ")\n";
  }
  return kExitOk;
}

int History(const GlobalOptions& g) {
  auto reg = OpenRegistry(g, false);
  if (!reg.ok()) return PrintError(reg.status());
  json list = json::array();
  for (const auto& h : (*reg)->History()) list.push_back(HistoryJson(**reg, h));
  if (g.json) {
    PrintJson(list);
    return kExitOk;
  }
  for (const auto& h : list) {
    std::cout << h["seq"].get<uint64_t>() << "  " << h["time"].get<std::string>() << "  "
              << h["from_label"].get<std::string>() << " -> " << h["to_label"].get<std::string>() << "  "
              << h["cause"].get<std::string>()
              << (h["note"].get<std::string>().empty() ? "" : "  " + h["note"].get<std::string>()) << "\n";
  }
  return kExitOk;
}

int Promote(const GlobalOptions& g, const std::string& version, bool force) {
  auto reg = OpenRegistry(g, true);
  if (!reg.ok()) return PrintError(reg.status());
  auto result = (*reg)->Promote(version, std::nullopt, force);
  if (!result.ok()) return PrintError(result.status());
  auto id = (*reg)->Resolve(version);
  const std::string label = id.ok() ? (*reg)->Label(*id) : version;
  if (result->promoted && result->forced && id.ok()) {
    // Promoted by hand: the events its window was quarantined for go back
    // into training (when there is a feedback store; none is created).
    const std::string store_dir = ResolveDataDir(g.data_dir) + "/replay";
    auto adapter = (*reg)->Load(*id);
    if (adapter.ok() && PathExists(store_dir + "/CURRENT")) {
      replay::Options so;
      so.create_if_missing = false;
      auto store = replay::Store::Open(so, store_dir);
      Status released = store.ok() ? (*store)->Release(adapter->lineage) : store.status();
      if (!released.ok()) return PrintError(released.WithContext("promoted, but releasing the quarantined events"));
    }
  }
  if (g.json) {
    PrintJson(json{{"version", id.ok() ? *id : version},
                   {"label", label},
                   {"promoted", result->promoted},
                   {"forced", result->forced},
                   {"gate", result->decision.Summary()}});
  } else if (result->promoted) {
    std::cout << "promoted " << label << (result->forced ? " (forced past the gate)" : "") << "\n";
  }
  if (!result->promoted) {
    return PrintError(FailedPreconditionError(label + " rejected by the gate: " + result->decision.Summary()));
  }
  return kExitOk;
}

int Rollback(const GlobalOptions& g, const std::string& version) {
  auto reg = OpenRegistry(g, true);
  if (!reg.ok()) return PrintError(reg.status());
  const std::string from = (*reg)->Active();
  adapters::RollbackRequest req;
  if (!version.empty()) req.target = version;
  req.note = "from the command line";
  auto to = (*reg)->Rollback(req);
  if (!to.ok()) return PrintError(to.status());
  if (g.json) {
    PrintJson(json{{"from", from}, {"to", *to}, {"from_label", (*reg)->Label(from)}, {"to_label", (*reg)->Label(*to)}});
  } else {
    std::cout << "rolled back " << (*reg)->Label(from) << " -> "
              << (to->empty() ? "none (no adapter)" : (*reg)->Label(*to)) << "\n";
  }
  return kExitOk;
}

int SetPin(const GlobalOptions& g, const std::string& version, bool pin) {
  auto reg = OpenRegistry(g, true);
  if (!reg.ok()) return PrintError(reg.status());
  Status s = pin ? (*reg)->Pin(version) : (*reg)->Unpin(version);
  if (!s.ok()) return PrintError(s);
  auto id = (*reg)->Resolve(version);
  if (g.json) {
    PrintJson(json{{"version", id.ok() ? *id : version}, {"pinned", pin}});
  } else {
    std::cout << (pin ? "pinned " : "unpinned ") << (id.ok() ? (*reg)->Label(*id) : version) << "\n";
  }
  return kExitOk;
}

int Gc(const GlobalOptions& g) {
  auto reg = OpenRegistry(g, true);
  if (!reg.ok()) return PrintError(reg.status());
  // An interrupted training window resumes from its parent: keep it.
  std::set<std::string> keep;
#ifdef ATTUNE_HAVE_RUNTIME_CLI
  auto ck = trainer::ReadCheckpointWindow(ResolveDataDir(g.data_dir) + "/checkpoints/train.ck");
  if (ck.ok() && !ck->parent_version.empty()) keep.insert(ck->parent_version);
#endif
  auto r = (*reg)->Gc(keep);
  if (!r.ok()) return PrintError(r.status());
  if (g.json) {
    PrintJson(json{{"removed_versions", r->removed_versions},
                   {"removed_files", r->removed_files},
                   {"bytes_freed", r->bytes_freed}});
  } else {
    for (const auto& v : r->removed_versions) std::cout << "removed " << (*reg)->Label(v) << " " << v << "\n";
    for (const auto& f : r->removed_files) std::cout << "deleted " << f << "\n";
    std::cout << r->removed_versions.size() << " versions removed, " << r->bytes_freed << " bytes freed\n";
  }
  return kExitOk;
}

int Repair(const GlobalOptions& g) {
  adapters::RegistryOptions o;
  auto r = Registry::Repair(o, RegistryDir(g));
  if (!r.ok()) return PrintError(r.status());
  if (g.json) {
    PrintJson(json{{"state_rebuilt", r->state_rebuilt},
                   {"damage", r->damage},
                   {"state_backup", r->state_backup},
                   {"adopted", r->adopted},
                   {"damaged_payloads", r->damaged_payloads}});
    return kExitOk;
  }
  if (r->state_rebuilt) {
    std::cout << "STATE rebuilt from the payloads: " << r->damage << "\n";
    if (!r->state_backup.empty()) std::cout << "damaged STATE kept as " << r->state_backup << "\n";
    std::cout << "lost with STATE: which version was active, pins, gate verdicts and the activation history; every "
                 "version is a candidate again (promote one to serve it)\n";
  }
  for (const auto& id : r->adopted) std::cout << "adopted " << id << "\n";
  for (const auto& d : r->damaged_payloads) std::cout << "damaged (left in place) " << d << "\n";
  if (!r->state_rebuilt && r->adopted.empty()) std::cout << "STATE is readable and names every valid payload\n";
  return kExitOk;
}

}  // namespace

void AddAdaptersCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  CLI::App* cmd = app.add_subcommand("adapters", "Adapter registry: list, promote, roll back, pin, gc, repair");
  cmd->require_subcommand(1);
  // Shared by the subcommands; only one runs per process.
  static std::string version;
  static bool force = false;

  CLI::App* ls = cmd->add_subcommand("ls", "List versions (* marks the active one)");
  AddCommonFlags(ls, g);
  ls->callback(Run(r, [&g] { return Ls(g); }));

  CLI::App* show = cmd->add_subcommand("show", "Show one version: manifest, metrics, history");
  AddCommonFlags(show, g);
  show->add_option("version", version, "vN, an id or an id prefix")->required();
  show->callback(Run(r, [&g] { return Show(g, version); }));

  CLI::App* history = cmd->add_subcommand("history", "Activations and rollbacks, oldest first");
  AddCommonFlags(history, g);
  history->callback(Run(r, [&g] { return History(g); }));

  CLI::App* promote = cmd->add_subcommand("promote", "Promote a candidate through the gate");
  AddCommonFlags(promote, g);
  promote->add_option("version", version, "vN, an id or an id prefix")->required();
  promote->add_flag("--force", force, "Skip the gate (recorded in the history)");
  promote->callback(Run(r, [&g] { return Promote(g, version, force); }));

  CLI::App* rollback = cmd->add_subcommand("rollback", "Return to the previous active version, or to VERSION");
  AddCommonFlags(rollback, g);
  rollback->add_option("version", version, "vN, an id or an id prefix (default: the previous active version)");
  rollback->callback(Run(r, [&g] { return Rollback(g, version); }));

  CLI::App* pin = cmd->add_subcommand("pin", "Keep a version through gc");
  AddCommonFlags(pin, g);
  pin->add_option("version", version, "vN, an id or an id prefix")->required();
  pin->callback(Run(r, [&g] { return SetPin(g, version, true); }));

  CLI::App* unpin = cmd->add_subcommand("unpin", "Let gc remove a version again");
  AddCommonFlags(unpin, g);
  unpin->add_option("version", version, "vN, an id or an id prefix")->required();
  unpin->callback(Run(r, [&g] { return SetPin(g, version, false); }));

  CLI::App* gc = cmd->add_subcommand("gc", "Delete versions nothing needs (keeps active, pinned, recent, history)");
  AddCommonFlags(gc, g);
  gc->callback(Run(r, [&g] { return Gc(g); }));

  CLI::App* repair = cmd->add_subcommand(
      "repair", "Rebuild a missing or damaged STATE from the payloads, adopt unlisted ones; deletes nothing");
  AddCommonFlags(repair, g);
  repair->callback(Run(r, [&g] { return Repair(g); }));
}

}  // namespace attune::cli
