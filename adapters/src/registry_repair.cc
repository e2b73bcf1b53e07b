// Registry::Repair: rebuild or complete STATE from the payloads.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "lock_file.h"
#include "registry_check.h"
#include "state_file.h"

namespace attune::adapters {
namespace {

namespace fs = std::filesystem;
using Record = v1::AdapterVersionRecord;

struct Found {
  std::string id;
  Adapter adapter;
  uint64_t bytes = 0;
};

// Every payload file that verifies (its bytes hash to its name); the
// others are listed in `damaged` and left alone.
std::vector<Found> ReadPayloads(const std::string& payload_dir, std::vector<std::string>& damaged) {
  std::vector<Found> out;
  std::error_code ec;
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(payload_dir, ec)) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    const std::string name = p.filename().string();
    if (name.find(".tmp.") != std::string::npos || p.extension() != ".adapter") continue;
    const std::string id = p.stem().string();
    auto a = ReadPayloadFile(p.string(), id);
    if (!a.ok()) {
      damaged.push_back(p.string() + ": " + a.status().message());
      continue;
    }
    out.push_back(Found{id, std::move(a).value(), fs::file_size(p, ec)});
  }
  return out;
}

int64_t NowMs(const RegistryOptions& o) {
  if (o.clock) return o.clock();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<RepairResult> Registry::Repair(const RegistryOptions& options, const std::string& dir) {
  const std::string state_path = dir + "/STATE", payload_dir = dir + "/payloads";
  if (!PathExists(dir)) return NotFoundError("no adapter registry at '" + dir + "'");
  if (options.read_only) return FailedPreconditionError("adapter registry '" + dir + "': repair needs write access");
  ASSIGN_OR_RETURN(internal::LockFile lock, internal::LockFile::Acquire(dir + "/LOCK", options.lock_timeout_ms));
  RepairResult result;
  v1::AdapterRegistryState state;
  auto read = internal::ReadStateFile(state_path);
  if (read.ok()) {
    state = std::move(read).value();
  } else if (read.status().code() == StatusCode::kUnsupported) {
    return read.status();
  } else {
    result.state_rebuilt = true;
    result.damage = read.status().message();
    state.set_format_version(internal::kStateFormatVersion);
    state.set_next_seq(1);
  }
  std::vector<Found> found = ReadPayloads(payload_dir, result.damaged_payloads);
  // In the order they were made, so that labels follow lineage.
  std::stable_sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return a.adapter.created_unix_ms < b.adapter.created_unix_ms;
  });
  const int64_t now = NowMs(options);
  for (const Found& f : found) {
    if (internal::FindRecord(state, f.id) != nullptr || internal::IsDeleted(state, f.id)) continue;
    Record* r = state.add_versions();
    internal::FillCandidate(f.adapter, f.id, f.bytes, now, r);
    r->set_seq(state.next_seq());
    state.set_next_seq(state.next_seq() + 1);
    result.adopted.push_back(f.id);
  }
  if (!result.state_rebuilt && result.adopted.empty()) return result;
  // The damaged STATE is evidence: keep it under another name.
  if (result.state_rebuilt && PathExists(state_path)) {
    result.state_backup = state_path + ".damaged-" + std::to_string(now);
    RETURN_IF_ERROR(RenameDurable(state_path, result.state_backup));
  }
  RETURN_IF_ERROR(internal::WriteStateFile(state_path, state));
  return result;
}

}  // namespace attune::adapters
