#include "open_check.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <regex>
#include <vector>

#include "attune/core/file.h"

namespace attune::replay::internal {
namespace {

constexpr char kFirstManifest[] = "MANIFEST-000001";

constexpr char kRepairHint[] =
    " (hint: `attune feedback repair` recovers what is left; it keeps a copy of the damaged store)";

// The non-empty write-ahead logs of the store: RocksDB's checksum errors
// while replaying a log do not say which file they came from.
std::vector<std::string> NonEmptyLogs(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    struct stat st {};
    if (name.size() > 4 && name.ends_with(".log") &&
        ::stat((path + "/" + name).c_str(), &st) == 0 && st.st_size > 0) {
      out.push_back(path + "/" + name);
    }
  }
  ::closedir(d);
  return out;
}

// The MANIFEST that CURRENT names, "" if CURRENT is unreadable.
std::string CurrentManifest(const std::string& path) {
  auto current = ReadFile(path + "/CURRENT");
  if (!current.ok()) return "";
  std::string name = *current;
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  if (name.rfind("MANIFEST-", 0) != 0 || name.find('/') != std::string::npos) return "";
  return path + "/" + name;
}

// Which files a RocksDB message without a file name is about: the MANIFEST
// (it lists everything else), a log it names by number, and the logs that
// hold data.
std::string DamagedFiles(const std::string& path, const std::string& msg) {
  std::vector<std::string> files;
  static const std::regex kLogNumber("log number:? ([0-9]+)");
  std::smatch m;
  if (std::regex_search(msg, m, kLogNumber)) {
    char name[32];
    std::snprintf(name, sizeof name, "%06llu.log", std::stoull(m[1].str()));
    files.push_back(path + "/" + name + " (missing or cut short)");
  }
  if (std::string manifest = CurrentManifest(path); !manifest.empty()) files.push_back(manifest);
  for (const auto& f : NonEmptyLogs(path)) files.push_back(f);
  std::string out;
  for (const auto& f : files) out += (out.empty() ? "" : ", ") + f;
  return out.empty() ? "" : " (files involved: " + out + ")";
}

// RocksDB looks for a table as NNNNNN.sst and then under its legacy name
// NNNNNN.ldb, and reports the last name it tried. The store writes .sst.
std::string FixTableName(std::string msg) {
  static const std::regex kLdb("([0-9]{6,})\\.ldb");
  return std::regex_replace(msg, kLdb, "$1.sst");
}

}  // namespace

Result<DirScan> ScanStoreDir(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) return DirScan{};
    if (err == ENOTDIR) {
      return FailedPreconditionError("replay store '" + path + "': a parent of it is a file, not a directory");
    }
    return IoError("replay store '" + path + "': " + std::strerror(err));
  }
  if (!S_ISDIR(st.st_mode)) return FailedPreconditionError("replay store '" + path + "' is not a directory");
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return IoError("replay store '" + path + "': cannot read it: " + std::strerror(errno));
  DirScan scan;
  bool any = false, current = false, lock = false, only_creation_files = true;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    any = true;
    current = current || name == "CURRENT";
    lock = lock || name == "LOCK";
    scan.has_log = scan.has_log || (name.size() > 4 && name.ends_with(".log"));
    const bool creation_file = name == "IDENTITY" || name == "LOCK" || name == "LOG" || name == "CURRENT" ||
                               name == kFirstManifest || name.starts_with("LOG.old.") ||
                               name.starts_with("OPTIONS-") || name.ends_with(".dbtmp");
    only_creation_files = only_creation_files && creation_file;
  }
  ::closedir(d);
  if (current) {
    // A CURRENT we may not read is not a damaged store: say so plainly.
    if (::access((path + "/CURRENT").c_str(), R_OK) != 0) {
      return IoError("replay store '" + path + "/CURRENT': " + std::strerror(errno));
    }
    scan.state = DirState::kStore;
  } else {
    scan.state = any ? DirState::kDamaged : DirState::kEmpty;
  }
  // RocksDB takes its LOCK before it writes anything: a folder without one
  // is not a creation of ours. CURRENT, when there, names the first MANIFEST.
  scan.creation_cut_short = lock && only_creation_files &&
                            (!current || CurrentManifest(path) == path + "/" + kFirstManifest);
  return scan;
}

Status OpenError(const rocksdb::Status& s, const std::string& path) {
  std::string text = FixTableName(s.ToString());
  const std::string where = "replay store '" + path + "'";
  if (s.IsIOError() && (text.find("Resource temporarily unavailable") != std::string::npos ||
                        text.find("lock hold by current process") != std::string::npos)) {
    return UnavailableError(where +
                            " is in use by another process (its LOCK is held); retry when that process exits, or "
                            "open it read-only");
  }
  if (text.find("Permission denied") != std::string::npos) {
    return IoError(where + ": permission denied: " + text);
  }
  const bool names_a_file = text.find(path + "/") != std::string::npos;
  const std::string files = names_a_file ? "" : DamagedFiles(path, text);
  if (s.IsCorruption()) {
    // A checksum error while replaying a log names no file: the logs with
    // data are the ones replayed.
    std::string logs;
    if (!names_a_file && text.find("log number") == std::string::npos) {
      for (const auto& f : NonEmptyLogs(path)) logs += (logs.empty() ? "" : ", ") + f;
      if (!logs.empty())
        return DataLossError(where + " is damaged in the write-ahead log " + logs + ": " + text + kRepairHint);
    }
    return DataLossError(where + " is damaged" + files + ": " + text + kRepairHint);
  }
  // A file the MANIFEST lists is gone: the store has lost data.
  if (s.IsIOError() && names_a_file && text.find("No such file or directory") != std::string::npos) {
    return DataLossError(where + " is damaged: a file it needs is missing: " + text + kRepairHint);
  }
  if (s.IsInvalidArgument() && text.find("does not exist") != std::string::npos) {
    return NotFoundError(where + ": " + text);
  }
  if (s.IsInvalidArgument() || s.IsNotFound()) {
    // "Column family not found" and friends: a store this build did not write
    // or a damaged MANIFEST. Either way it is not ours to change.
    return DataLossError(where + " cannot be opened" + files + ": " + text + kRepairHint);
  }
  return IoError(where + ": " + text);
}

}  // namespace attune::replay::internal
