#include "registry_check.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>

#include "attune/adapters/payload.h"

namespace attune::adapters::internal {
namespace fs = std::filesystem;
using Record = v1::AdapterVersionRecord;

namespace {

bool IsHex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool IsVersionId(const std::string& s) { return s.size() == 64 && IsHex(s); }

constexpr std::string_view kPayloadSuffix = ".adapter";

}  // namespace

const Record* FindRecord(const v1::AdapterRegistryState& s, const std::string& id) {
  if (id.empty()) return nullptr;
  for (const Record& r : s.versions()) {
    if (r.id() == id) return &r;
  }
  return nullptr;
}

Record* FindRecord(v1::AdapterRegistryState& s, const std::string& id) {
  return const_cast<Record*>(FindRecord(static_cast<const v1::AdapterRegistryState&>(s), id));
}

bool IsDeleted(const v1::AdapterRegistryState& s, const std::string& id) {
  for (const auto& d : s.deleted()) {
    if (d.id() == id) return true;
  }
  return false;
}

void EraseDeleted(v1::AdapterRegistryState& s, const std::string& id) {
  auto* d = s.mutable_deleted();
  for (int i = 0; i < d->size(); ++i) {
    if (d->Get(i).id() == id) {
      d->DeleteSubrange(i, 1);
      return;
    }
  }
}

std::string LabelOf(const v1::AdapterRegistryState& s, const std::string& id) {
  if (id.empty()) return "none";
  if (const Record* r = FindRecord(s, id)) return "v" + std::to_string(r->seq());
  for (const auto& d : s.deleted()) {
    if (d.id() == id) return "v" + std::to_string(d.seq());
  }
  return ShortVersion(id);
}

Result<std::string> ResolveVersion(const v1::AdapterRegistryState& s, const std::string& version) {
  if (version.size() > 1 && version[0] == 'v' &&
      std::all_of(version.begin() + 1, version.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    for (const Record& r : s.versions()) {
      if ("v" + std::to_string(r.seq()) == version) return r.id();
    }
    for (const auto& d : s.deleted()) {
      if ("v" + std::to_string(d.seq()) == version) {
        return NotFoundError("adapter " + version + " was removed by gc");
      }
    }
    return NotFoundError("no adapter version " + version + " (hint: attune adapters ls)");
  }
  if (version.size() < 4 || !IsHex(version)) {
    return InvalidArgumentError("'" + version + "' is not a version (expected vN or at least 4 hex chars of an id)");
  }
  std::string found;
  for (const Record& r : s.versions()) {
    if (r.id().compare(0, version.size(), version) == 0) {
      if (!found.empty()) return InvalidArgumentError("version prefix '" + version + "' is ambiguous");
      found = r.id();
    }
  }
  if (found.empty()) return NotFoundError("no adapter version " + version + " (hint: attune adapters ls)");
  return found;
}

bool WasActive(const v1::AdapterRegistryState& s, const std::string& id) {
  for (const auto& h : s.history()) {
    if (h.to_version() == id) return true;
  }
  return false;
}

std::string DefaultRollbackTarget(const v1::AdapterRegistryState& s) {
  for (int i = s.history_size() - 1; i >= 0; --i) {
    for (const std::string* v : {&s.history(i).from_version(), &s.history(i).to_version()}) {
      const Record* r = FindRecord(s, *v);
      if (r != nullptr && r->id() != s.active_version() && r->state() == Record::RETIRED) return r->id();
    }
  }
  return "";
}

std::set<std::string> GcKeepSet(const v1::AdapterRegistryState& s, int keep_last, int keep_history) {
  std::set<std::string> keep;
  if (!s.active_version().empty()) keep.insert(s.active_version());
  for (const Record& r : s.versions()) {
    if (r.pinned()) keep.insert(r.id());
  }
  std::vector<const Record*> by_seq;
  for (const Record& r : s.versions()) by_seq.push_back(&r);
  std::sort(by_seq.begin(), by_seq.end(), [](const Record* a, const Record* b) { return a->seq() > b->seq(); });
  for (int i = 0; i < keep_last && i < static_cast<int>(by_seq.size()); ++i) keep.insert(by_seq[i]->id());
  for (int i = s.history_size() - 1, n = 0; i >= 0 && n < keep_history; --i, ++n) {
    keep.insert(s.history(i).from_version());
    keep.insert(s.history(i).to_version());
  }
  std::string rollback = DefaultRollbackTarget(s);
  keep.insert(rollback);
  keep.erase("");
  return keep;
}

size_t CountPayloadFiles(const std::string& payload_dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(payload_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp.") == std::string::npos && name.size() > kPayloadSuffix.size() &&
        name.compare(name.size() - kPayloadSuffix.size(), kPayloadSuffix.size(), kPayloadSuffix) == 0) {
      ++n;
    }
  }
  return n;
}

void FillCandidate(const Adapter& adapter, const std::string& id, uint64_t payload_bytes, int64_t now_ms, Record* r) {
  r->set_id(id);
  r->set_state(Record::CANDIDATE);
  r->set_parent_version(adapter.parent_version);
  r->set_created_unix_ms(adapter.created_unix_ms);
  r->set_added_unix_ms(now_ms);
  r->set_payload_bytes(payload_bytes);
  for (const auto& [k, v] : adapter.metrics) (*r->mutable_metrics())[k] = v;
  r->set_rank(adapter.rank);
  for (LoraTarget t : adapter.targets) r->add_targets(std::string(LoraTargetName(t)));
  r->set_base_fingerprint(adapter.base_fingerprint);
}

Status RemoveUnreferenced(const v1::AdapterRegistryState& s, const std::string& dir, const std::string& payload_dir,
                          GcResult& result) {
  std::set<std::string> named, deleted;
  for (const Record& r : s.versions()) named.insert(r.id() + std::string(kPayloadSuffix));
  for (const auto& d : s.deleted()) deleted.insert(d.id() + std::string(kPayloadSuffix));
  auto remove = [&](const fs::path& p) -> Status {
    std::error_code ec;
    uint64_t size = fs::file_size(p, ec);
    if (!fs::remove(p, ec) || ec) return IoError("cannot remove '" + p.string() + "': " + ec.message());
    result.removed_files.push_back(p.string());
    result.bytes_freed += ec ? 0 : size;
    return Status::Ok();
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(payload_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || named.count(name)) continue;
    if (deleted.count(name) || name.find(".tmp.") != std::string::npos) RETURN_IF_ERROR(remove(e.path()));
  }
  if (ec) return IoError("cannot list '" + payload_dir + "': " + ec.message());
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().filename().string().rfind("STATE.tmp.", 0) == 0) {
      RETURN_IF_ERROR(remove(e.path()));
    }
  }
  return Status::Ok();
}

namespace {

void CheckRecords(const v1::AdapterRegistryState& s, CheckReport& rep) {
  std::map<std::string, int> ids;
  int active = 0;
  for (const Record& r : s.versions()) {
    const std::string label = "v" + std::to_string(r.seq());
    if (!IsVersionId(r.id())) rep.errors.push_back(label + ": id '" + r.id() + "' is not a SHA-256 hex digest");
    if (ids[r.id()]++ == 1) rep.errors.push_back(label + ": id " + r.id() + " is listed twice");
    if (r.seq() == 0 || r.seq() >= s.next_seq()) rep.errors.push_back(label + ": sequence number out of range");
    if (r.state() == Record::STATE_UNSPECIFIED || !Record::State_IsValid(r.state())) {
      rep.errors.push_back(label + ": unknown state");
    }
    if (r.state() == Record::ACTIVE) ++active;
    if (!r.parent_version().empty() && !FindRecord(s, r.parent_version()) && !IsDeleted(s, r.parent_version())) {
      rep.warnings.push_back(label + ": parent " + ShortVersion(r.parent_version()) + " is unknown");
    }
  }
  const std::string& av = s.active_version();
  const Record* ar = FindRecord(s, av);
  if (!av.empty() && ar == nullptr) rep.errors.push_back("active version " + av + " is not in the registry");
  if (ar != nullptr && ar->state() != Record::ACTIVE) {
    rep.errors.push_back("active version " + LabelOf(s, av) + " is not in state active");
  }
  if (active != (av.empty() ? 0 : 1)) {
    rep.errors.push_back(std::to_string(active) + " versions are in state active, expected " +
                         (av.empty() ? "0" : "1"));
  }
  for (const auto& h : s.history()) {
    for (const std::string* v : {&h.from_version(), &h.to_version()}) {
      if (!v->empty() && !FindRecord(s, *v) && !IsDeleted(s, *v)) {
        rep.errors.push_back("history entry " + std::to_string(h.seq()) + " names unknown version " + *v);
      }
    }
  }
}

void CheckFiles(const v1::AdapterRegistryState& s, const std::string& dir, const std::string& payload_dir, bool verify,
                CheckReport& rep) {
  std::set<std::string> named;
  for (const Record& r : s.versions()) {
    const std::string file = r.id() + std::string(kPayloadSuffix);
    named.insert(file);
    const std::string path = payload_dir + "/" + file;
    const std::string label = "v" + std::to_string(r.seq());
    std::error_code ec;
    uint64_t size = fs::file_size(path, ec);
    if (ec) {
      rep.errors.push_back(label + ": payload '" + path + "' is missing");
    } else if (size != r.payload_bytes()) {
      rep.errors.push_back(label + ": payload '" + path + "' has " + std::to_string(size) + " bytes, expected " +
                           std::to_string(r.payload_bytes()));
    } else if (verify) {
      auto loaded = ReadPayloadFile(path, r.id());
      if (!loaded.ok()) rep.errors.push_back(label + ": " + loaded.status().message());
    }
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(payload_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (named.count(name)) continue;
    if (name.find(".tmp.") != std::string::npos) {
      rep.warnings.push_back("temporary file '" + e.path().string() + "' (gc removes it)");
    } else if (name.ends_with(kPayloadSuffix) && IsDeleted(s, name.substr(0, name.size() - kPayloadSuffix.size()))) {
      rep.warnings.push_back("payload of a removed version '" + e.path().string() + "' (gc removes it)");
    } else {
      rep.warnings.push_back("payload '" + e.path().string() +
                             "' is not in STATE (kept; `attune adapters repair` adopts it if it is valid)");
    }
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind("STATE.tmp.", 0) == 0) {
      rep.warnings.push_back("temporary file '" + e.path().string() + "' (gc removes it)");
    }
  }
}

}  // namespace

CheckReport CheckRegistry(const v1::AdapterRegistryState& s, const std::string& dir, const std::string& payload_dir,
                          bool verify_payloads) {
  CheckReport rep;
  CheckRecords(s, rep);
  CheckFiles(s, dir, payload_dir, verify_payloads, rep);
  return rep;
}

}  // namespace attune::adapters::internal
