#include "tests/replay/damage_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/replay/test_util.h"

namespace attune::replay::testing {
namespace fs = std::filesystem;

void CopyStoreFiles(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) {
    if (!e.is_regular_file() || e.path().filename() == "LOCK") continue;
    fs::copy_file(e.path(), fs::path(to) / e.path().filename(), fs::copy_options::overwrite_existing);
  }
}

std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "LOCK" || name.rfind("LOG", 0) == 0) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out[fs::relative(e.path(), dir).string()] = ss.str();
  }
  return out;
}

std::vector<std::string> DataFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& [name, contents] : Snapshot(dir)) {
    if (name.find('/') == std::string::npos) out.push_back(name);
  }
  return out;
}

const char* DamageName(Damage d) {
  switch (d) {
    case Damage::kFlipByte:
      return "flip";
    case Damage::kTruncate:
      return "truncate";
    case Damage::kDelete:
      return "delete";
  }
  return "?";
}

void Apply(Damage d, const std::string& path) {
  if (d == Damage::kDelete) {
    fs::remove(path);
    return;
  }
  const auto size = fs::file_size(path);
  if (d == Damage::kTruncate) {
    fs::resize_file(path, size / 2);
    return;
  }
  if (size == 0) return;
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(size / 2));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(size / 2));
  f.put(static_cast<char>(~c));
}

std::vector<feedback::Event> WriteStore(const std::string& dir, int n, bool crash_image) {
  Options o = TestOptions();
  o.durability = Durability::kSync;
  std::vector<feedback::Event> events;
  const std::string live = crash_image ? dir + ".live" : dir;
  {
    auto store = OpenOrDie(o, live);
    if (!store) return events;
    for (int i = 1; i <= n; ++i) {
      events.push_back(MakeEvent("e-" + std::to_string(i), i % 2 ? "u-1" : "u-2"));
      EXPECT_TRUE(store->Append(events.back()).ok());
    }
    if (crash_image) CopyStoreFiles(live, dir);
  }
  if (crash_image) fs::remove_all(live);
  return events;
}

Result<std::vector<feedback::Event>> ReadAll(const std::string& dir) {
  Options o = TestOptions();
  o.read_only = true;
  ASSIGN_OR_RETURN(auto store, Store::Open(o, dir));
  std::vector<feedback::Event> out;
  RETURN_IF_ERROR(store->Scan({}, [&](const StoredEvent& e) {
    out.push_back(e.event);
    return true;
  }));
  return out;
}

}  // namespace attune::replay::testing
