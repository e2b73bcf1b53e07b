#include "src/sync_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "attune/core/file.h"

namespace attune::export_::internal {

using nlohmann::json;

Result<SyncState> LoadSyncState(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok() && text.status().code() == StatusCode::kNotFound) return SyncState{};
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, false);
  SyncState s;
  auto bad = [&] { return DataLossError(path + ": damaged sync state (delete it to rescan the folder)"); };
  if (j.is_discarded() || !j.is_object()) return bad();
  try {
    const json imported = j.value("imported", json::object());
    for (auto& [origin, v] : imported.items()) {
      s.imported[origin] = {v.at("local").get<std::string>(), v.at("device").get<std::string>(), v.at("label").get<std::string>()};
    }
    for (const auto& e : j.value("erased", json::array())) s.erased.insert(e.get<std::string>());
    for (const auto& e : j.value("applied_tombstones", json::array())) s.applied.insert(e.get<std::string>());
  } catch (const json::exception&) {
    return bad();
  }
  return s;
}

Status SaveSyncState(const std::string& path, const SyncState& s) {
  json imported = json::object();
  for (const auto& [origin, o] : s.imported) imported[origin] = {{"local", o.local_id}, {"device", o.device_id}, {"label", o.label}};
  json j = {{"format_version", 1}, {"imported", imported}, {"erased", s.erased}, {"applied_tombstones", s.applied}};
  return WriteFileAtomic(path, j.dump(1) + "\n");
}

Result<FileLock> FileLock::Acquire(const std::string& path, int timeout_ms) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot open " + path + ": " + std::strerror(errno));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::close(fd);
      return UnavailableError(path + " is held by another sync of this data directory (retry later)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return FileLock(fd);
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace attune::export_::internal
