// A damaged registry: a missing or damaged STATE is DataLoss, gc never
// deletes what it cannot account for, repair rebuilds STATE from the
// payloads. Plus the corruption matrix over every file of the registry.
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

namespace fs = std::filesystem;
using testing::MakeAdapter;
using testing::PassingInput;
using testing::ScratchDir;

// Every file below `dir` (not LOCK) with its contents.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename() == "LOCK") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out[fs::relative(e.path(), dir).string()] = ss.str();
  }
  return out;
}

size_t PayloadCount(const std::string& dir) {
  size_t n = 0;
  for (const auto& [name, contents] : Snapshot(dir)) n += name.rfind("payloads/", 0) == 0 ? 1 : 0;
  return n;
}

RegistryOptions Options() {
  RegistryOptions o;
  o.clock = [] { return int64_t{1'800'000'000'000}; };
  return o;
}

// A registry with two versions, the second one active.
std::vector<std::string> MakeRegistry(const std::string& dir) {
  auto reg = Registry::Open(Options(), dir);
  EXPECT_TRUE(reg.ok()) << reg.status().ToString();
  std::vector<std::string> ids;
  for (uint32_t seed : {1u, 2u}) {
    Adapter a = MakeAdapter(seed);
    a.parent_version = ids.empty() ? "" : ids.back();
    auto id = (*reg)->Add(a);
    EXPECT_TRUE(id.ok());
    ids.push_back(*id);
  }
  auto p = (*reg)->Promote(ids[1], PassingInput(""), false);
  EXPECT_TRUE(p.ok() && p->promoted);
  return ids;
}

TEST(RegistryDamageTest, MissingStateWithPayloadsIsDataLossAndGcDeletesNothing) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  MakeRegistry(reg_dir);
  fs::remove(reg_dir + "/STATE");
  const auto before = Snapshot(reg_dir);
  for (bool read_only : {true, false}) {
    RegistryOptions o = Options();
    o.read_only = read_only;
    auto reg = Registry::Open(o, reg_dir);
    ASSERT_FALSE(reg.ok()) << "opened as an empty registry (read_only " << read_only << ")";
    EXPECT_EQ(reg.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(reg.status().message().find("STATE is missing"), std::string::npos) << reg.status().message();
    EXPECT_NE(reg.status().message().find("adapters repair"), std::string::npos);
  }
  EXPECT_EQ(Snapshot(reg_dir), before) << "a failed open wrote or deleted files";
  EXPECT_EQ(PayloadCount(reg_dir), 2u);
}

TEST(RegistryDamageTest, GcKeepsPayloadsStateDoesNotKnow) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  MakeRegistry(reg_dir);
  auto reg = Registry::Open(Options(), reg_dir);
  ASSERT_TRUE(reg.ok());
  // A valid adapter whose state entry was lost, and bytes that are none.
  auto stray = WritePayloadFile(reg_dir + "/payloads/stray.adapter", MakeAdapter(7));
  ASSERT_TRUE(stray.ok());
  const std::string unknown = reg_dir + "/payloads/" + std::string(64, 'f') + ".adapter";
  ASSERT_TRUE(WriteFileAtomic(unknown, "x").ok());
  const std::string tmp = reg_dir + "/payloads/" + std::string(64, 'e') + ".adapter.tmp.1.2";
  ASSERT_TRUE(WriteFileAtomic(tmp, "y").ok());
  auto gc = (*reg)->Gc();
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_TRUE(PathExists(reg_dir + "/payloads/stray.adapter"));
  EXPECT_TRUE(PathExists(unknown));
  EXPECT_FALSE(PathExists(tmp)) << "temporary files are accounted for";
  EXPECT_EQ(gc->removed_files, std::vector<std::string>{tmp});
}

TEST(RegistryDamageTest, RepairRebuildsMissingStateFromThePayloads) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  auto ids = MakeRegistry(reg_dir);
  fs::remove(reg_dir + "/STATE");
  auto r = Registry::Repair(Options(), reg_dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->state_rebuilt);
  EXPECT_EQ(r->adopted, ids) << "in the order they were created";
  EXPECT_TRUE(r->damaged_payloads.empty());
  auto reg = Registry::Open(Options(), reg_dir);
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_TRUE((*reg)->report().ok());
  ASSERT_EQ((*reg)->List().size(), 2u);
  EXPECT_EQ((*reg)->List()[1].parent_version, ids[0]);
  EXPECT_EQ((*reg)->List()[1].state, VersionState::kCandidate);
  EXPECT_EQ((*reg)->Active(), "");
  EXPECT_TRUE((*reg)->Load("v2").ok());
}

TEST(RegistryDamageTest, RepairKeepsADamagedStateAndLeavesDamagedPayloads) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  auto ids = MakeRegistry(reg_dir);
  std::ofstream(reg_dir + "/STATE", std::ios::trunc) << "garbage";
  std::ofstream(reg_dir + "/payloads/" + ids[0] + ".adapter", std::ios::trunc) << "damaged";
  auto r = Registry::Repair(Options(), reg_dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->state_rebuilt);
  EXPECT_NE(r->damage.find("STATE"), std::string::npos) << r->damage;
  ASSERT_FALSE(r->state_backup.empty());
  EXPECT_EQ(*ReadFile(r->state_backup), "garbage");
  EXPECT_EQ(r->adopted, std::vector<std::string>{ids[1]});
  ASSERT_EQ(r->damaged_payloads.size(), 1u);
  EXPECT_NE(r->damaged_payloads[0].find(ids[0]), std::string::npos);
  EXPECT_TRUE(PathExists(reg_dir + "/payloads/" + ids[0] + ".adapter")) << "repair deletes nothing";
}

TEST(RegistryDamageTest, RepairAdoptsValidPayloadsStateDoesNotName) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  auto ids = MakeRegistry(reg_dir);
  auto stray = WritePayloadFile(reg_dir + "/payloads/tmp-name", MakeAdapter(9));
  ASSERT_TRUE(stray.ok());
  fs::rename(reg_dir + "/payloads/tmp-name", reg_dir + "/payloads/" + *stray + ".adapter");
  auto r = Registry::Repair(Options(), reg_dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->state_rebuilt);
  EXPECT_EQ(r->adopted, std::vector<std::string>{*stray});
  auto reg = Registry::Open(Options(), reg_dir);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ((*reg)->Active(), ids[1]) << "a readable STATE keeps its history";
  EXPECT_EQ((*reg)->List().size(), 3u);
}

// The matrix: STATE and each payload, flipped, truncated or deleted. Every
// reader then sees all versions intact or fails with DataLoss naming the
// file; gc deletes no payload; repair brings back every intact payload.
enum class Damage { kFlip, kTruncate, kDelete };

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
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(size / 2));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(size / 2));
  f.put(static_cast<char>(~c));
}

// Lists and loads every version; DataLoss naming `file` is the only
// acceptable failure.
void ExpectAllOrDataLoss(const std::string& reg_dir, const std::string& file, const std::vector<std::string>& ids) {
  RegistryOptions o = Options();
  o.read_only = true;
  auto reg = Registry::Open(o, reg_dir);
  if (!reg.ok()) {
    EXPECT_EQ(reg.status().code(), StatusCode::kDataLoss) << reg.status().ToString();
    EXPECT_NE(reg.status().message().find(file == "STATE" ? "STATE" : file), std::string::npos)
        << reg.status().message();
    return;
  }
  EXPECT_EQ((*reg)->List().size(), ids.size()) << "versions disappeared without an error";
  for (const auto& id : ids) {
    auto a = (*reg)->Load(id);
    if (a.ok()) continue;
    EXPECT_EQ(a.status().code(), StatusCode::kDataLoss) << a.status().ToString();
    EXPECT_NE(a.status().message().find(file), std::string::npos) << a.status().message();
  }
}

TEST(RegistryDamageTest, CorruptionMatrixEveryFileEveryDamage) {
  ScratchDir pristine;
  const std::string src = pristine.path() + "/adapters";
  auto ids = MakeRegistry(src);
  std::vector<std::string> files = {"STATE"};
  for (const auto& id : ids) files.push_back("payloads/" + id + ".adapter");
  for (const auto& file : files) {
    for (Damage d : {Damage::kFlip, Damage::kTruncate, Damage::kDelete}) {
      SCOPED_TRACE(file + " damage " + std::to_string(static_cast<int>(d)));
      ScratchDir scratch;
      const std::string reg_dir = scratch.path() + "/adapters";
      fs::copy(src, reg_dir, fs::copy_options::recursive);
      Apply(d, reg_dir + "/" + file);
      const size_t payloads = PayloadCount(reg_dir);
      const std::string name = fs::path(file).filename().string();
      ExpectAllOrDataLoss(reg_dir, name, ids);
      auto writer = Registry::Open(Options(), reg_dir);
      if (writer.ok()) {
        EXPECT_TRUE((*writer)->Gc().ok());
      } else {
        EXPECT_EQ(writer.status().code(), StatusCode::kDataLoss) << writer.status().ToString();
      }
      EXPECT_EQ(PayloadCount(reg_dir), payloads) << "a command deleted a payload";
      auto repaired = Registry::Repair(Options(), reg_dir);
      ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
      auto reg = Registry::Open(Options(), reg_dir);
      ASSERT_TRUE(reg.ok()) << reg.status().ToString();
      for (const auto& id : ids) {
        const bool intact = PathExists(reg_dir + "/payloads/" + id + ".adapter") &&
                            ReadPayloadFile(reg_dir + "/payloads/" + id + ".adapter", id).ok();
        if (intact) {
          EXPECT_TRUE((*reg)->Load(id).ok()) << "repair did not recover an intact payload " << id;
        }
      }
      EXPECT_EQ(PayloadCount(reg_dir), payloads) << "repair deleted a payload";
    }
  }
}

// Random damage to STATE: Open reports DataLoss or opens a consistent
// state; never a crash (run under AddressSanitizer by scripts/test.sh).
TEST(RegistryDamageTest, RandomDamageToStateNeverCrashes) {
  ScratchDir dir;
  const std::string reg_dir = dir.path() + "/adapters";
  MakeRegistry(reg_dir);
  const std::string pristine = *ReadFile(reg_dir + "/STATE");
  int iterations = 300;
  if (const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS")) iterations = std::atoi(n) / 4;
  std::mt19937 rng(77);
  RegistryOptions o = Options();
  o.read_only = true;
  // protobuf logs every invalid UTF-8 string it meets; that is noise here.
  google::protobuf::LogHandler* previous = google::protobuf::SetLogHandler(nullptr);
  for (int it = 0; it < iterations; ++it) {
    std::string damaged = pristine;
    if (it % 3 == 0) {
      damaged.resize(rng() % damaged.size());
    } else {
      for (int n = 1 + static_cast<int>(rng() % 4); n > 0; --n) {
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
      }
    }
    ASSERT_TRUE(WriteFileAtomic(reg_dir + "/STATE", damaged).ok());
    auto reg = Registry::Open(o, reg_dir);
    if (!reg.ok()) {
      // A flipped format_version may read as a newer format: Unsupported.
      EXPECT_TRUE(reg.status().code() == StatusCode::kDataLoss || reg.status().code() == StatusCode::kUnsupported)
          << reg.status().ToString();
      EXPECT_NE(reg.status().message().find("STATE"), std::string::npos);
    }
  }
  google::protobuf::SetLogHandler(previous);
}

}  // namespace
}  // namespace attune::adapters
