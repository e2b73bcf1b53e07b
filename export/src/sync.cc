#include "attune/export/sync.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "attune/adapters/erasure.h"
#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "attune/export/bundle.h"
#include "attune/export/files.h"
#include "attune/export/merge.h"
#include "src/names.h"
#include "src/sync_state.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;
using adapters::Registry;
using adapters::VersionState;
using internal::SyncState;

constexpr int kLockTimeoutMs = 5000;

bool IsVersionId(const std::string& s) { return std::regex_match(s, std::regex("^[0-9a-f]{64}$")); }

// Final (non-temporary) files of one kind in a peer folder, sorted.
std::vector<fs::path> FilesWithSuffix(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    std::string name = e.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        IsVersionId(name.substr(0, name.size() - suffix.size()))) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> DeviceDirs(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && std::regex_match(e.path().filename().string(), std::regex("^[0-9a-f]{16}$"))) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class SyncRun {
 public:
  SyncRun(Registry& reg, const KeyStore& keys, const std::string& dir, const SyncOptions& o, SyncState& st, SyncReport& rep)
      : reg_(reg), keys_(keys), dir_(dir), own_(dir + "/" + keys.device().device_id), o_(o), st_(st), rep_(rep) {}

  Status Publish(const std::string& outbox);
  Status ApplyTombstones(const std::string& outbox);
  Status ImportBundles();
  Status MergeDiverged();

 private:
  std::set<std::string> ImportedLocalIds() const {
    std::set<std::string> s;
    for (const auto& [origin, o] : st_.imported) s.insert(o.local_id);
    return s;
  }
  Status EraseLocal(const std::set<std::string>& ids, const std::string& why);
  std::set<std::string> LocalVersionsBuiltFrom(const std::set<std::string>& erased) const;
  Status CheckBase(const BundleContents& b) const;
  Result<std::string> AddImported(const BundleContents& b);

  Registry& reg_;
  const KeyStore& keys_;
  std::string dir_, own_;
  const SyncOptions& o_;
  SyncState& st_;
  SyncReport& rep_;
  std::vector<std::string> just_imported_;
};

Status SyncRun::Publish(const std::string& outbox) {
  RETURN_IF_ERROR(MakeDirs(own_));
  for (const auto& t : FilesWithSuffix(outbox, ".tombstone")) {
    const std::string to = own_ + "/" + t.filename().string();
    if (PathExists(to)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(t.string()));
    RETURN_IF_ERROR(WriteFileAtomic(to, bytes));
    rep_.tombstones_out.push_back(to);
  }
  const std::set<std::string> imported = ImportedLocalIds();
  for (const auto& v : reg_.List()) {
    if (v.state != VersionState::kActive && v.state != VersionState::kRetired) continue;
    if (imported.count(v.id) || st_.erased.count(v.id)) continue;
    const std::string to = own_ + "/" + v.id + ".bundle";
    if (PathExists(to)) continue;
    auto payload = ReadFile(reg_.PayloadPath(v.id));
    if (!payload.ok()) continue;  // removed by a concurrent gc: nothing to publish
    ASSIGN_OR_RETURN(std::string bundle, SealBundle(*payload, v.label(), keys_.device().device_id, keys_));
    RETURN_IF_ERROR(WriteFileAtomic(to, bundle));
    rep_.exported.push_back(v.id);
  }
  return Status::Ok();
}

std::set<std::string> SyncRun::LocalVersionsBuiltFrom(const std::set<std::string>& erased) const {
  // The erased ids, the local copies of those imported here, and (closed
  // over by the registry's lineage) their descendants and merges.
  std::set<std::string> seeds = erased;
  for (const auto& id : erased) {
    if (auto it = st_.imported.find(id); it != st_.imported.end()) seeds.insert(it->second.local_id);
  }
  return adapters::VersionsBuiltFrom(reg_, seeds);
}

Status SyncRun::EraseLocal(const std::set<std::string>& ids, const std::string& why) {
  const std::string active = reg_.Active();
  for (const auto& id : ids) {
    if (id == active) continue;
    RETURN_IF_ERROR(reg_.Erase(id));
    rep_.erased.push_back(id);
    rep_.notes.push_back(adapters::ShortVersion(id) + " erased (" + why + ")");
  }
  if (ids.count(active)) {
    adapters::RollbackRequest rb;
    rb.cause = adapters::ActivationCause::kRollbackManual;
    rb.note = why;
    rb.expected_active = active;
    ASSIGN_OR_RETURN(std::string now, reg_.Rollback(rb));
    RETURN_IF_ERROR(reg_.Erase(active));
    rep_.erased.push_back(active);
    rep_.notes.push_back(adapters::ShortVersion(active) + " was active: rolled back to " +
                         (now.empty() ? "the base model" : reg_.Label(now)) + " and erased (" + why + ")");
  }
  return Status::Ok();
}

Status SyncRun::ApplyTombstones(const std::string& outbox) {
  // This device's own pending tombstones apply here too.
  std::vector<fs::path> dirs = DeviceDirs(dir_);
  dirs.push_back(outbox);
  for (const auto& dev : dirs) {
    for (const auto& path : FilesWithSuffix(dev, ".tombstone")) {
      auto bytes = ReadFile(path.string());
      if (!bytes.ok()) continue;
      const std::string digest = Sha256Hex(*bytes);
      if (st_.applied.count(digest)) continue;
      auto t = OpenTombstone(*bytes, path.string(), keys_);
      if (!t.ok()) {
        rep_.refused.push_back({path.string(), t.status().message()});
        continue;
      }
      std::set<std::string> erased(t->erased_versions.begin(), t->erased_versions.end());
      RETURN_IF_ERROR(EraseLocal(LocalVersionsBuiltFrom(erased), "erased on device " + t->device_id + ": " + t->reason));
      st_.erased.insert(erased.begin(), erased.end());
      st_.applied.insert(digest);
      // This device's own bundles of erased versions leave the folder too.
      for (const auto& id : erased) {
        std::error_code ec;
        fs::remove(own_ + "/" + id + ".bundle", ec);
      }
    }
  }
  return Status::Ok();
}

Status SyncRun::CheckBase(const BundleContents& b) const {
  if (o_.base_model) return b.adapter.CheckCompatible(*o_.base_model);
  return CheckSameBaseAsRegistry(reg_, b.adapter);
}

Result<std::string> SyncRun::AddImported(const BundleContents& b) {
  adapters::Adapter a = b.adapter;
  if (!a.parent_version.empty() && !reg_.Get(a.parent_version).ok()) {
    auto it = st_.imported.find(a.parent_version);
    if (it != st_.imported.end() && reg_.Get(it->second.local_id).ok()) {
      a.parent_version = it->second.local_id;
    } else {
      a.training_config["sync.parent_version"] = a.parent_version;
      a.training_config["sync.origin_version"] = b.info.version_id;
      a.parent_version.clear();
    }
  }
  // Unchanged payload bytes keep the version id of the origin device, so that
  // lineage and tombstones name the same version everywhere.
  return reg_.Add(a);
}

Status SyncRun::ImportBundles() {
  std::vector<BundleContents> pending;
  std::vector<std::string> paths;
  for (const auto& dev : DeviceDirs(dir_)) {
    if (dev.filename() == keys_.device().device_id) continue;
    for (const auto& path : FilesWithSuffix(dev, ".bundle")) {
      const std::string id = path.stem().string();
      if (st_.erased.count(id) || st_.imported.count(id) || reg_.Get(id).ok()) continue;
      auto b = ReadBundleFile(path.string(), keys_);
      Status st = b.ok() ? CheckBase(*b).WithContext(path.string()) : b.status();
      if (st.ok() && b->info.version_id != id) st = DataLossError(path.string() + ": the file name does not match its version id");
      if (!st.ok()) {
        rep_.refused.push_back({path.string(), st.message()});
        continue;
      }
      pending.push_back(std::move(b).value());
    }
  }
  // Parents before children.
  std::sort(pending.begin(), pending.end(), [](const BundleContents& x, const BundleContents& y) {
    return x.info.created_unix_ms < y.info.created_unix_ms;
  });
  for (const auto& b : pending) {
    auto local = AddImported(b);
    if (!local.ok()) {
      rep_.refused.push_back({b.info.version_id, local.status().message()});
      continue;
    }
    st_.imported[b.info.version_id] = {*local, b.info.trained_on_device, b.info.label};
    rep_.imported.push_back({b.info.version_id, *local, b.info.trained_on_device, b.info.label});
    just_imported_.push_back(*local);
  }
  return Status::Ok();
}

Status SyncRun::MergeDiverged() {
  const std::string active = reg_.Active();
  if (!o_.merge_diverged || active.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(adapters::Adapter mine, reg_.Load(active));
  for (const auto& id : just_imported_) {
    ASSIGN_OR_RETURN(adapters::Adapter peer, reg_.Load(id));
    if (peer.parent_version != mine.parent_version || peer.base_fingerprint != mine.base_fingerprint) continue;
    // Both continued from parent P: ΔW_mine + ΔW_peer − ΔW_P keeps what each learned once.
    std::vector<MergeInput> in = {{&mine, active}, {&peer, id}};
    std::vector<double> w = {1.0, 1.0};
    adapters::Adapter parent;
    if (!mine.parent_version.empty()) {
      ASSIGN_OR_RETURN(parent, reg_.Load(mine.parent_version));
      in.push_back({&parent, mine.parent_version});
      w.push_back(-1.0);
    }
    MergeOptions mo;
    mo.weights = w;
    ASSIGN_OR_RETURN(adapters::Adapter merged, Merge(in, mo));
    merged.training_config["merge.reason"] = "diverged since a common parent (sync)";
    for (const auto& [k, v] : mine.metrics) merged.metrics["source." + k] = v;
    ASSIGN_OR_RETURN(std::string mid, reg_.Add(merged));
    rep_.merged.push_back(mid);
  }
  return Status::Ok();
}

}  // namespace

Result<SyncReport> Sync(Registry& registry, const KeyStore& keys, const std::string& dir, const std::string& state_dir,
                        const SyncOptions& options) {
  if (!fs::is_directory(dir)) return NotFoundError("sync folder " + dir + " does not exist");
  RETURN_IF_ERROR(MakeDirs(state_dir + "/outbox"));
  ASSIGN_OR_RETURN(internal::FileLock lock, internal::FileLock::Acquire(state_dir + "/LOCK", kLockTimeoutMs));
  RETURN_IF_ERROR(registry.Refresh().status());
  ASSIGN_OR_RETURN(SyncState st, internal::LoadSyncState(state_dir + "/state.json"));
  SyncReport rep;
  SyncRun run(registry, keys, dir, options, st, rep);
  // Tombstones first, so that nothing erased is published or imported.
  Status s = run.ApplyTombstones(state_dir + "/outbox");
  if (s.ok()) s = run.Publish(state_dir + "/outbox");
  if (s.ok()) s = run.ImportBundles();
  if (s.ok()) s = run.MergeDiverged();
  // Whatever was done is recorded, even when a later step failed.
  RETURN_IF_ERROR(internal::SaveSyncState(state_dir + "/state.json", st));
  if (!s.ok()) return s;
  return rep;
}

Result<std::string> RecordErasure(const KeyStore& keys, const std::string& state_dir,
                                  const std::vector<std::string>& versions, const std::string& reason) {
  if (versions.empty()) return std::string();
  Tombstone t{versions, reason, internal::NowUnixMs(), ""};
  ASSIGN_OR_RETURN(std::string bytes, SealTombstone(t, keys));
  RETURN_IF_ERROR(MakeDirs(state_dir + "/outbox"));
  const std::string path = state_dir + "/outbox/" + Sha256Hex(bytes) + ".tombstone";
  RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  return path;
}

}  // namespace attune::export_
