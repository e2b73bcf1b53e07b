// The corruption matrix: every file of a replay store, flipped, truncated
// or deleted. Every reader and writer then either sees every acknowledged
// event, or fails with DataLoss naming the damaged file and changes
// nothing; repair recovers what it can and reports the rest.
//
// Two images: a store closed normally (every event in tables) and a copy
// taken while it was open, as a crash leaves it (the events also in the
// write-ahead log). One case cannot be detected by any store: the live log
// of a crash image cut short looks exactly like a crash in mid-write, so
// there the test asserts that what remains is a consistent earlier state (a
// prefix of the events), as docs/replay.md says.
#include <gtest/gtest.h>

#include <filesystem>

#include "attune/replay/repair.h"
#include "attune/replay/store.h"
#include "tests/replay/damage_util.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

namespace fs = std::filesystem;
using testing::Damage;
using testing::ScratchDir;
using testing::TestOptions;

constexpr int kEvents = 12;

struct Case {
  bool crash_image;
  std::string file;
  Damage damage;
  std::string Name() const {
    return std::string(crash_image ? "crash image " : "closed store ") + file + " " + testing::DamageName(damage);
  }
};

bool IsLiveLog(const std::string& dir, const std::string& file) {
  if (file.size() < 4 || file.substr(file.size() - 4) != ".log") return false;
  for (const auto& other : testing::DataFiles(dir)) {
    if (other.size() > 4 && other.substr(other.size() - 4) == ".log" && other > file) return false;
  }
  return true;
}

bool IsPrefix(const std::vector<feedback::Event>& got, const std::vector<feedback::Event>& all) {
  return got.size() <= all.size() && std::equal(got.begin(), got.end(), all.begin());
}

// One command's outcome: all acknowledged events, or DataLoss naming `file`.
void ExpectAllOrDataLoss(const Case& c, const char* command, const Result<std::vector<feedback::Event>>& got,
                         const std::vector<feedback::Event>& written, bool undetectable) {
  SCOPED_TRACE(c.Name() + ", " + command);
  if (got.ok()) {
    if (undetectable) {
      EXPECT_TRUE(IsPrefix(*got, written)) << got->size() << " events, not a prefix";
    } else {
      EXPECT_EQ(got->size(), written.size()) << "events disappeared without an error";
      EXPECT_EQ(*got, written);
    }
    return;
  }
  EXPECT_EQ(got.status().code(), StatusCode::kDataLoss) << got.status().ToString();
  // A deleted log leaves no trace of its number: "no write-ahead log" names it.
  const bool names_it = got.status().message().find(c.file) != std::string::npos ||
                        (c.damage == Damage::kDelete && c.file.ends_with(".log") &&
                         got.status().message().find("no write-ahead log") != std::string::npos);
  EXPECT_TRUE(names_it) << got.status().message();
}

// Names of the files that differ between two snapshots (not their bytes:
// a store's files are too large to print).
std::string Changed(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  std::string out;
  for (const auto& [name, bytes] : a) {
    auto it = b.find(name);
    if (it == b.end())
      out += " -" + name;
    else if (it->second != bytes)
      out += " ~" + name;
  }
  for (const auto& [name, bytes] : b) {
    if (!a.count(name)) out += " +" + name;
  }
  return out;
}

// Opens for writing, then reads everything back and checks the store.
Result<std::vector<feedback::Event>> WriterView(const std::string& dir) {
  ASSIGN_OR_RETURN(auto store, Store::Open(TestOptions(), dir));
  std::vector<feedback::Event> out;
  RETURN_IF_ERROR(store->Scan({}, [&](const StoredEvent& e) {
    out.push_back(e.event);
    return true;
  }));
  RETURN_IF_ERROR(store->GetStats().status());
  RETURN_IF_ERROR(store->Verify());
  return out;
}

void ExpectRepairRecovers(const Case& c, const std::string& dir, const std::vector<feedback::Event>& written,
                          bool undetectable) {
  SCOPED_TRACE(c.Name() + ", repair");
  auto r = RepairStore(TestOptions(), dir);
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
    return;
  }
  if (r->needed) {
    EXPECT_TRUE(fs::exists(r->backup_dir));
    fs::remove_all(r->backup_dir);
  }
  auto after = WriterView(dir);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (const auto& e : *after) {
    EXPECT_NE(std::find(written.begin(), written.end(), e), written.end()) << "event " << e.id << " changed";
  }
  if (after->size() < written.size() && !undetectable) {
    EXPECT_TRUE(r->needed);
    EXPECT_TRUE(!r->events_known || r->events_before > r->events_recovered || !r->lost_event_ids.empty())
        << "repair recovered " << after->size() << " of " << written.size() << " and reported no loss";
  }
}

void RunCase(const Case& c, const std::string& pristine, const std::vector<feedback::Event>& written) {
  ScratchDir scratch("matrix");
  const std::string dir = scratch.path();
  testing::CopyStoreFiles(pristine, dir);
  const bool undetectable = c.crash_image && IsLiveLog(dir, c.file) && c.damage == Damage::kTruncate;
  testing::Apply(c.damage, dir + "/" + c.file);
  const auto damaged = testing::Snapshot(dir);

  auto reader = testing::ReadAll(dir);
  ExpectAllOrDataLoss(c, "read-only open", reader, written, undetectable);
  EXPECT_EQ(Changed(damaged, testing::Snapshot(dir)), "") << c.Name() << ": a reader changed files";

  auto writer = WriterView(dir);
  ExpectAllOrDataLoss(c, "open for writing", writer, written, undetectable);
  if (!writer.ok()) {
    EXPECT_EQ(Changed(damaged, testing::Snapshot(dir)), "") << c.Name() << ": a failed open changed files";
  }

  ExpectRepairRecovers(c, dir, written, undetectable);
}

void RunImage(bool crash_image) {
  ScratchDir pristine("matrix_pristine");
  auto written = testing::WriteStore(pristine.path(), kEvents, crash_image);
  ASSERT_EQ(written.size(), static_cast<size_t>(kEvents));
  const auto files = testing::DataFiles(pristine.path());
  ASSERT_GE(files.size(), 4u);
  for (const auto& file : files) {
    for (Damage d : {Damage::kFlipByte, Damage::kTruncate, Damage::kDelete}) {
      RunCase(Case{crash_image, file, d}, pristine.path(), written);
    }
  }
}

TEST(CorruptionMatrixTest, ClosedStoreEveryFileEveryDamage) { RunImage(/*crash_image=*/false); }

TEST(CorruptionMatrixTest, CrashImageEveryFileEveryDamage) { RunImage(/*crash_image=*/true); }

}  // namespace
}  // namespace attune::replay
