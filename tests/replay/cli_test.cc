// The `attune feedback` commands, run as a user would run them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attune/runtime/gguf.h"
#include "tests/replay/test_util.h"
#include "tests/cli/command_util.h"

namespace attune::replay {
namespace {

using Output = ::attune::testing::CommandOutput;
using ::attune::testing::ExitCode;
using ::attune::testing::Slurp;

class FeedbackCliTest : public ::testing::Test {
 protected:
  // Runs `attune feedback ARGS --data-dir DIR` with `input` on stdin.
  Output Run(const std::string& args, const std::string& input = "") {
    std::string in = dir_.path() + ".in", out = dir_.path() + ".out", err = dir_.path() + ".err";
    std::ofstream(in) << input;
    std::string cmd = std::string(ATTUNE_CLI) + " feedback " + args + " --data-dir " + dir_.path() + " <" + in + " >" +
                      out + " 2>" + err;
    int status = std::system(cmd.c_str());
    Output o{ExitCode(status), Slurp(out), Slurp(err)};
    std::remove(in.c_str());
    std::remove(out.c_str());
    std::remove(err.c_str());
    return o;
  }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = dir_.path() + "." + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const auto& f : files_) std::remove(f.c_str());
  }

  testing::ScratchDir dir_{"cli"};
  std::vector<std::string> files_;
};

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

constexpr char kEvent[] =
    R"({"id":"e-17","user_id":"u-1","context":[{"role":"user","content":"What's my dog called?"}],)"
    R"("response":"I don't know.","correction":{"text":"Your dog is called Pixel."}})";

TEST_F(FeedbackCliTest, AddStoresAnEventFromTheJsonFlagOrStdin) {
  Output a = Run("add --json " + ShellQuote(kEvent));
  EXPECT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["status"], "stored");
  Output b = Run("add", kEvent);
  EXPECT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(b.out, "duplicate e-17\n");
}

TEST_F(FeedbackCliTest, AddOfABadEventExitsOneNamingTheField) {
  Output o = Run("add", R"({"id":"e","user_id":"u","context":[],"rating":{"thumb":"UP"}})");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("context: at least one message is required"), std::string::npos) << o.err;
}

TEST_F(FeedbackCliTest, ImportKeepsGoodLinesAndReportsBadOnesByLine) {
  std::string file = WriteFile(
      "in.jsonl",
      std::string(kEvent) + "\n" +
          R"({"id":"e-18","user_id":"u-2","context":[{"role":"robot","content":"x"}],"demonstration":{"text":"y"}})"
          "\n"
          "\n"
          R"({"id":"e-19",)"
          "\n" +
          std::string(kEvent) + "\n" +
          R"({"id":"e-20","user_id":"u-2","context":[{"role":"user","content":"x"}],"demonstration":{"text":"y"}})"
          "\n");
  Output o = Run("import " + file);
  EXPECT_EQ(o.code, 1);  // some lines were rejected
  EXPECT_EQ(o.out, "accepted 2, rejected 2, duplicates 1\n");
  EXPECT_NE(o.err.find(file + ":2: context[0].role: unknown role 'robot'"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find(file + ":4: invalid JSON"), std::string::npos) << o.err;
  Output ls = Run("ls --json");
  EXPECT_EQ(nlohmann::json::parse(ls.out)["events"].size(), 2u);
}

TEST_F(FeedbackCliTest, ImportJsonOutputCountsAndErrors) {
  std::string file = WriteFile("in.jsonl", std::string(kEvent) + "\nnot json\n");
  Output o = Run("import --json " + file);
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["accepted"], 1);
  EXPECT_EQ(j["rejected"], 1);
  EXPECT_EQ(j["errors"][0]["line"], 2);
}

TEST_F(FeedbackCliTest, ForgetUserRemovesItFromExportLsAndStats) {
  std::string file =
      WriteFile("in.jsonl",
                R"({"id":"a","user_id":"alice","context":[{"role":"user","content":"x"}],"demonstration":{"text":"y"}})"
                "\n"
                R"({"id":"b","user_id":"bob","context":[{"role":"user","content":"x"}],"demonstration":{"text":"y"}})"
                "\n");
  ASSERT_EQ(Run("import " + file).code, 0);
  Output f = Run("forget --user alice --json");
  EXPECT_EQ(f.code, 0) << f.err;
  EXPECT_EQ(nlohmann::json::parse(f.out)["events_erased"], 1);
  Output exp = Run("export");
  EXPECT_EQ(exp.out.find("alice"), std::string::npos);
  EXPECT_NE(exp.out.find("bob"), std::string::npos);
  EXPECT_TRUE(Run("export --user alice").out.empty());
  EXPECT_EQ(Run("ls").out.find("alice"), std::string::npos);
  auto stats = nlohmann::json::parse(Run("stats --json").out);
  EXPECT_EQ(stats["events"], 1);
  EXPECT_EQ(stats["forgotten"], 1);
}

TEST_F(FeedbackCliTest, ExportRoundTripsThroughImport) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  std::string exported = Run("export").out;
  testing::ScratchDir other("cli_other");
  std::string file = WriteFile("export.jsonl", exported);
  std::string cmd =
      std::string(ATTUNE_CLI) + " feedback import " + file + " --data-dir " + other.path() + " >/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST_F(FeedbackCliTest, BadUsageExitsTwo) {
  EXPECT_EQ(Run("forget").code, 2);
  EXPECT_EQ(Run("forget --user a --event b").code, 2);
  EXPECT_EQ(Run("ls --limit many").code, 2);
  EXPECT_EQ(Run("import").code, 2);
}

TEST_F(FeedbackCliTest, ForgetUnknownEventExitsOne) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  Output o = Run("forget --event nope");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("nope"), std::string::npos);
}

TEST_F(FeedbackCliTest, StatsOfAnEmptyDataDirAreZero) {
  auto j = nlohmann::json::parse(Run("stats --json").out);
  EXPECT_EQ(j["events"], 0);
}

// Runs `attune ARGS` as given (no --data-dir added).
Output RunRaw(const std::string& args) {
  testing::ScratchDir io("cli_raw");
  std::filesystem::create_directories(io.path());
  std::string out = io.path() + "/out", err = io.path() + "/err";
  std::string cmd = std::string(ATTUNE_CLI) + " " + args + " </dev/null >" + out + " 2>" + err;
  int status = std::system(cmd.c_str());
  return Output{ExitCode(status), Slurp(out), Slurp(err)};
}

TEST_F(FeedbackCliTest, ReadersOfADataDirThatIsAFileFailInsteadOfShowingAnEmptyStore) {
  std::string file = WriteFile("not_a_dir", "x");
  for (const char* cmd : {"ls", "stats", "export"}) {
    Output o = RunRaw(std::string("feedback ") + cmd + " --data-dir " + file);
    EXPECT_EQ(o.code, 1) << cmd << ": " << o.out;
    EXPECT_NE(o.err.find("not a directory"), std::string::npos) << cmd << ": " << o.err;
    EXPECT_EQ(o.out, "") << cmd;
  }
}

// A command prefix that runs as an unprivileged user: as root (whom file
// modes do not stop), through setpriv as nobody (uid/gid 65534); otherwise as
// the user running the test. The binary is copied into a folder everyone may
// read, since the build folder may be private.
std::string Unprivileged(const std::string& bin_dir) {
  std::filesystem::create_directories(bin_dir);
  std::filesystem::permissions(bin_dir, std::filesystem::perms(0755));
  const std::string bin = bin_dir + "/attune";
  std::filesystem::copy_file(ATTUNE_CLI, bin, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(bin, std::filesystem::perms(0755));
  return (::geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups -- " : "") + bin;
}

void ChmodTree(const std::string& path, std::filesystem::perms dirs, std::filesystem::perms files) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(path)) {
    std::filesystem::permissions(e.path(), e.is_directory() ? dirs : files);
  }
  std::filesystem::permissions(path, dirs);
}

TEST_F(FeedbackCliTest, PermissionDeniedIsReportedAsSuchNotAsALockHeldByAnotherProcess) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  const std::string user = Unprivileged(dir_.path() + "_bin");
  const std::string input = WriteFile("event.json", kEvent);
  std::filesystem::permissions(dir_.path(), std::filesystem::perms(0755));
  const std::string store = dir_.path() + "/replay";
  ChmodTree(store, std::filesystem::perms(0555), std::filesystem::perms(0444));  // nobody may write
  auto run = [&](const std::string& args) {
    testing::ScratchDir io("cli_user");
    std::filesystem::create_directories(io.path());
    std::string out = io.path() + "/out", err = io.path() + "/err";
    int status = std::system((user + " " + args + " >" + out + " 2>" + err).c_str());
    return Output{ExitCode(status), Slurp(out), Slurp(err)};
  };
  Output add = run("feedback add --data-dir " + dir_.path() + " <" + input);
  EXPECT_EQ(add.code, 1) << add.out;
  EXPECT_NE(add.err.find("ermission denied"), std::string::npos) << add.err;
  EXPECT_EQ(add.err.find("in use by another process"), std::string::npos) << add.err;
  EXPECT_NE(add.err.find(store), std::string::npos) << "names the store: " << add.err;

  // A store nobody may read: the readers say so instead of showing an empty store.
  std::filesystem::permissions(store, std::filesystem::perms::none);
  for (const char* cmd : {"ls", "stats"}) {
    Output o = run(std::string("feedback ") + cmd + " --data-dir " + dir_.path());
    EXPECT_EQ(o.code, 1) << cmd << ": " << o.out;
    EXPECT_NE(o.err.find("ermission denied"), std::string::npos) << cmd << ": " << o.err;
    EXPECT_EQ(o.out, "") << cmd;
  }
  // Nothing was lost: the owner reads the event back.
  ChmodTree(store, std::filesystem::perms(0755), std::filesystem::perms(0644));
  Output ls = Run("ls --json");
  EXPECT_EQ(ls.code, 0) << ls.err;
  EXPECT_NE(ls.out.find("e-17"), std::string::npos) << ls.out;
  std::filesystem::remove_all(dir_.path() + "_bin");
}

TEST_F(FeedbackCliTest, LsQuarantinedListsOnlyTheEventsHeldBack) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  std::string other = kEvent;
  other.replace(other.find("e-17"), 4, "e-18");
  ASSERT_EQ(Run("add", other).code, 0);
  {
    auto store = Store::Open(Options{}, dir_.path() + "/replay");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->Quarantine({"e-18"}).ok());
  }
  auto all = nlohmann::json::parse(Run("ls --json").out)["events"];
  auto held = nlohmann::json::parse(Run("ls --quarantined --json").out)["events"];
  EXPECT_EQ(all.size(), 2u);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0]["event"]["id"], "e-18");
}

TEST_F(FeedbackCliTest, EmptyDataDirIsAUsageErrorNotTheDefault) {
  for (const char* cmd : {"ls", "add --json '{}'", "repair"}) {
    Output o = RunRaw(std::string("feedback ") + cmd + " --data-dir ''");
    EXPECT_EQ(o.code, 2) << cmd << ": " << o.err;
    EXPECT_NE(o.err.find("--data-dir"), std::string::npos) << cmd << ": " << o.err;
  }
}

TEST_F(FeedbackCliTest, LimitMustBeAnUnsignedCount) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  for (const char* bad : {"-1", "''", "18446744073709551616"}) {
    Output o = Run(std::string("ls --limit ") + bad);
    EXPECT_EQ(o.code, 2) << bad << ": " << o.out;
  }
  EXPECT_EQ(Run("ls --limit 1000000000").code, 0) << "the largest --limit";
  EXPECT_EQ(Run("ls --limit 1000000001").code, 2) << "one past the largest --limit";
}

TEST_F(FeedbackCliTest, ImportOfADirectoryFails) {
  Output o = Run("import " + dir_.path() + "_dir_input");  // absent
  EXPECT_EQ(o.code, 1);
  std::filesystem::create_directories(dir_.path() + "_dir_input");
  files_.push_back(dir_.path() + "_dir_input");
  o = Run("import " + dir_.path() + "_dir_input");
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_NE(o.err.find("is a directory"), std::string::npos) << o.err;
}

TEST_F(FeedbackCliTest, ImportWithInvalidUtf8UnderJsonPrintsASummaryNotACrash) {
  std::string bad = kEvent;
  bad.replace(bad.find("Pixel"), 1, "\xff");
  std::string file = WriteFile("utf8.jsonl", std::string(kEvent) + "\n" + bad + "\n");
  Output o = Run("import --json " + file);
  EXPECT_EQ(o.code, 1) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["accepted"], 1);
  EXPECT_EQ(j["rejected"], 1);
  EXPECT_EQ(j["errors"][0]["line"], 2);
}

TEST_F(FeedbackCliTest, NulByteAfterAnEventIsRejectedNotStored) {
  Output o = Run("add", std::string(kEvent) + std::string(1, '\0') + "garbage");
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_NE(o.err.find("NUL byte"), std::string::npos) << o.err;
  std::string file = WriteFile("nul.jsonl", std::string(kEvent) + std::string(1, '\0') + "x\n");
  o = Run("import " + file);
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.out, "accepted 0, rejected 1, duplicates 0\n");
}

TEST_F(FeedbackCliTest, EndlessInputIsCutAtTheLimitNotReadForever) {
  // /dev/zero has neither an end nor a newline.
  std::string cmd = std::string(ATTUNE_CLI) + " feedback add --json --data-dir " + dir_.path() +
                    " </dev/zero >/dev/null 2>" + dir_.path() + ".err";
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(Slurp(dir_.path() + ".err").find("more than 16777216 bytes"), std::string::npos);
  Output imp = Run("import /dev/zero");
  EXPECT_EQ(imp.code, 1);
  EXPECT_NE(imp.err.find("/dev/zero:1: line longer than 16777216 bytes"), std::string::npos) << imp.err;
  std::remove((dir_.path() + ".err").c_str());
}

TEST_F(FeedbackCliTest, ImportStopsAtAnOverlongLineAfterStoringTheLinesBefore) {
  std::string file = WriteFile("long.jsonl", std::string(kEvent) + "\n" + std::string((16u << 20) + 1, ' ') + "\n");
  Output o = Run("import " + file);
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.out, "accepted 1, rejected 0, duplicates 0\n");
  EXPECT_NE(o.err.find(":2: line longer than"), std::string::npos) << o.err;
  // A line of exactly the limit is read (and rejected as JSON, not cut).
  std::string at_limit = WriteFile("limit.jsonl", std::string((16u << 20) - 1, ' ') + "x\n" + kEvent + "\n");
  o = Run("import " + at_limit);
  EXPECT_EQ(o.out, "accepted 0, rejected 1, duplicates 1\n") << o.err;
}

TEST_F(FeedbackCliTest, FailedCommandsLeaveNoStoreBehind) {
  EXPECT_EQ(Run("forget --event nope").code, 1);
  EXPECT_EQ(Run("forget --user nobody").code, 0);
  EXPECT_EQ(Run("add", "{not json").code, 1);
  // Well-formed JSON that fails validation (no context) used to create the store first.
  EXPECT_EQ(Run("add", R"({"id":"e","user_id":"u","context":[],"rating":{"thumb":"UP"}})").code, 1);
  EXPECT_EQ(Run("import -", "{not json\n").code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/replay"));
}

TEST_F(FeedbackCliTest, DamagedStoreFailsEveryCommandAndRepairSaysWhatItRecovered) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  std::filesystem::remove(dir_.path() + "/replay/CURRENT");
  for (const char* cmd : {"ls", "stats"}) {
    Output o = Run(cmd);
    EXPECT_EQ(o.code, 1) << cmd << " said: " << o.out;
    EXPECT_NE(o.err.find("CURRENT"), std::string::npos) << o.err;
  }
  Output add = Run("add", std::string(kEvent).replace(7, 4, "e-99"));
  EXPECT_EQ(add.code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/replay/CURRENT")) << "add wrote over the damaged store";
  Output r = Run("repair --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["needed"], true);
  EXPECT_EQ(j["events_recovered"], 1);
  EXPECT_TRUE(std::filesystem::exists(j["backup"].get<std::string>()));
  std::filesystem::remove_all(j["backup"].get<std::string>());
  EXPECT_EQ(nlohmann::json::parse(Run("ls --json").out)["events"].size(), 1u);
  Output again = Run("repair");
  EXPECT_EQ(again.out, "the replay store opens and verifies: nothing to repair\n");
}

TEST_F(FeedbackCliTest, UnknownSubcommandIsNamed) {
  Output o = Run("frob");
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("unknown command 'frob'"), std::string::npos) << o.err;
}

// JSON output is shared by every command (cli_common): a file name that is
// not UTF-8 used to abort `model info --json` with an uncaught exception.
TEST_F(FeedbackCliTest, JsonOutputWithAPathThatIsNotUtf8DoesNotAbort) {
  const std::string bad_byte = "\xff";
  const std::string model = dir_.path() + "_bad" + bad_byte + "name.gguf";
  std::filesystem::copy_file(std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_llama.gguf", model);
  files_.push_back(model);
  Output o = RunRaw("model info --json --model " + ShellQuote(model));
  ASSERT_EQ(o.code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_NE(j["path"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD for the 0xFF byte";
  EXPECT_EQ(RunRaw("model info --model ''").code, 2) << "an empty --model is not the default model";
}

// `export --user "$U"` with U unset must not export every user's events.
TEST_F(FeedbackCliTest, EmptyUserIsAUsageErrorNotEveryone) {
  ASSERT_EQ(Run("add", kEvent).code, 0);
  Output o = Run("export --user ''");
  EXPECT_EQ(o.code, 2);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(Run("forget --user ''").code, 2);
}

// Writes `n` valid JSONL events to `path`.
void WriteEvents(const std::string& path, int n) {
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    out << R"({"id":"k-)" << i << R"(","user_id":"u-1","context":[{"role":"user","content":"question )" << i
        << R"("}],"response":"r","rating":{"thumb":"UP"}})" << "\n";
  }
}

// Starts `attune ARGS` with stdout/stderr discarded; returns its pid.
pid_t Spawn(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv = {const_cast<char*>(ATTUNE_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::freopen("/dev/null", "w", stdout);
    ::execv(ATTUNE_CLI, argv.data());
    ::_exit(127);
  }
  return pid;
}

// A kill while the first import created the store left one that every
// command refused ("Column family not found") until `feedback repair`.
TEST_F(FeedbackCliTest, KillDuringTheFirstImportNeverLeavesAStoreNothingOpens) {
  const std::string input = WriteFile("many.jsonl", "");
  WriteEvents(input, 20000);
  for (int delay_ms : {5, 20, 60, 150, 400}) {
    std::filesystem::remove_all(dir_.path());
    pid_t pid = Spawn({"feedback", "import", "--data-dir", dir_.path(), input});
    ASSERT_GT(pid, 0);
    ::usleep(useconds_t(delay_ms) * 1000);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    Output stats = Run("stats");
    EXPECT_EQ(stats.code, 0) << "killed after " << delay_ms << " ms: " << stats.err;
    Output add = Run("add", kEvent);
    EXPECT_EQ(add.code, 0) << "killed after " << delay_ms << " ms: " << add.err;
  }
}

// RocksDB writes CURRENT before the new store's first write-ahead log, and
// syncs the folder in between: a kill there left a store with no log, and a
// kill before CURRENT one with no CURRENT, and every later command refused
// both. strace kills the first import at its Nth fsync (then fdatasync),
// for every N until the store's families exist, so each crash point of
// creating it is hit every time, not by a lucky timer.
TEST_F(FeedbackCliTest, KillAtEachSyncOfTheFirstImportNeverLeavesAStoreNothingOpens) {
  const std::string strace = ATTUNE_STRACE;
  ASSERT_EQ(::access(strace.c_str(), X_OK), 0) << "strace is needed (scripts/install_deps.sh installs it): " << strace;
  const std::string input = WriteFile("one.jsonl", "");
  WriteEvents(input, 1);
  int killed = 0;
  for (const std::string call : {"fsync", "fdatasync"}) {
    for (int n = 1;; ++n) {
      ASSERT_LT(n, 200) << "the import never completed under strace";
      std::filesystem::remove_all(dir_.path());
      const std::string cmd = ShellQuote(strace) + " -f -qq -o /dev/null -e trace=" + call + " -e inject=" + call +
                              ":signal=KILL:when=" + std::to_string(n) + " " + ShellQuote(ATTUNE_CLI) +
                              " feedback import --data-dir " + ShellQuote(dir_.path()) + " " + ShellQuote(input) +
                              " >/dev/null 2>&1";
      const int status = std::system(cmd.c_str());
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;  // no Nth call: the import ran to the end
      ++killed;
      // Past the creation once RocksDB has written the MANIFEST that adds
      // the store's column families (after its first log): later crash
      // points are those of any write, which the crash tests cover.
      bool created = false;
      std::error_code ec;
      for (const auto& f : std::filesystem::directory_iterator(dir_.path() + "/replay", ec)) {
        const std::string name = f.path().filename().string();
        created = created || (name.rfind("MANIFEST-", 0) == 0 && name != "MANIFEST-000001");
      }
      // Repair has nothing to rebuild: the store is whole (or finishes its
      // creation), or there is none yet. It used to run RocksDB's repair on
      // an unfinished creation, fail ("no events could be recovered") and
      // leave a backup of nothing.
      Output repair = Run("repair --json");
      if (repair.code == 0) {
        EXPECT_FALSE(nlohmann::json::parse(repair.out)["needed"].get<bool>()) << "killed at " << call << " #" << n;
      } else {
        EXPECT_EQ(repair.code, 1);
        EXPECT_NE(repair.err.find("no replay store"), std::string::npos) << "killed at " << call << " #" << n << ": "
                                                                        << repair.err;
      }
      for (const auto& f : std::filesystem::directory_iterator(dir_.path(), ec)) {
        EXPECT_EQ(f.path().filename().string().find(".damaged-"), std::string::npos)
            << "killed at " << call << " #" << n << ": repair made a backup " << f.path();
      }
      Output stats = Run("stats --json");
      EXPECT_EQ(stats.code, 0) << "killed at " << call << " #" << n << ": " << stats.err;
      Output add = Run("add", kEvent);
      EXPECT_EQ(add.code, 0) << "killed at " << call << " #" << n << ": " << add.err;
      if (created) break;
    }
  }
  EXPECT_GE(killed, 4) << "the sweep must kill the import at several points";
}

// Two first `feedback add`s at once: the loser was told the (healthy) store
// "is damaged" and sent to `feedback repair`.
TEST_F(FeedbackCliTest, ConcurrentFirstAddsNeverCallTheStoreDamaged) {
  for (int round = 0; round < 8; ++round) {
    std::filesystem::remove_all(dir_.path());
    std::vector<pid_t> pids;
    std::vector<std::string> errs;
    for (int i = 0; i < 2; ++i) {
      const std::string err = dir_.path() + ".err" + std::to_string(i);
      errs.push_back(err);
      std::string ev = kEvent;
      ev.replace(ev.find("e-17"), 4, "c-" + std::to_string(i));
      pid_t pid = ::fork();
      if (pid == 0) {
        std::freopen(err.c_str(), "w", stderr);
        std::freopen("/dev/null", "w", stdout);
        ::execl(ATTUNE_CLI, ATTUNE_CLI, "feedback", "add", "--data-dir", dir_.path().c_str(), "--json", ev.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
      }
      pids.push_back(pid);
    }
    int stored = 0;
    for (size_t i = 0; i < pids.size(); ++i) {
      int status = 0;
      ::waitpid(pids[i], &status, 0);
      const std::string err = Slurp(errs[i]);
      std::remove(errs[i].c_str());
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ++stored;
        continue;
      }
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << err;
      EXPECT_EQ(err.find("damaged"), std::string::npos) << "round " << round << ": " << err;
      EXPECT_NE(err.find("in use by another process"), std::string::npos) << err;
    }
    EXPECT_GE(stored, 1);
    Output stats = Run("stats --json");
    ASSERT_EQ(stats.code, 0) << stats.err;
    EXPECT_EQ(nlohmann::json::parse(stats.out)["events"], stored) << "every acknowledged add is stored";
  }
}

// A write the file system refuses (here the file size limit) stops the
// import with exit 1 and the summary of what was stored, which stays stored;
// no later write is attempted.
TEST_F(FeedbackCliTest, ImportStopsWithASummaryWhenTheFileSystemRefusesAWrite) {
  const std::string input = WriteFile("fill.jsonl", "");
  WriteEvents(input, 3000);
  const std::string out = dir_.path() + ".fill.out", err = dir_.path() + ".fill.err";
  const std::string cmd = "bash -c \"ulimit -f 200; trap '' XFSZ; exec " + std::string(ATTUNE_CLI) +
                          " feedback import --data-dir " + dir_.path() + " " + input + "\" >" + out + " 2>" + err;
  int status = std::system(cmd.c_str());
  const std::string o = Slurp(out), e = Slurp(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << e;
  EXPECT_EQ(WEXITSTATUS(status), 1) << e;
  EXPECT_EQ(e.find("Assertion"), std::string::npos) << e;
  EXPECT_NE(e.find("File too large"), std::string::npos) << e;
  auto pos = o.find("accepted ");
  ASSERT_NE(pos, std::string::npos) << "the summary of what was stored: " << o;
  const int accepted = std::stoi(o.substr(pos + 9));
  EXPECT_GT(accepted, 0);
  Output stats = Run("stats --json");
  ASSERT_EQ(stats.code, 0) << stats.err;
  EXPECT_EQ(nlohmann::json::parse(stats.out)["events"], accepted);
}

// NaN passed CLI11's range checks, seeds wrapped, a FIFO as the model hung,
// and a model whose logits were NaN printed an empty reply with exit 0.
TEST_F(FeedbackCliTest, NonFiniteNumbersSpecialFilesAndNaNModelsAreRefused) {
  const std::string tiny = std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_llama.gguf";
  const std::string gen = "generate --raw --max-tokens 2 --model " + tiny + " ";
  EXPECT_EQ(RunRaw(gen + "hi").code, 0);
  for (const char* bad : {"--temperature nan", "--top-p nan", "--repetition-penalty nan", "--seed -1",
                          "--seed 18446744073709551616", "--seed 1e23"}) {
    Output o = RunRaw(gen + bad + " hi");
    EXPECT_EQ(o.code, 2) << bad << ": " << o.out;
  }
  EXPECT_EQ(RunRaw(gen + "--seed 18446744073709551615 hi").code, 0) << "the largest seed";

  const std::string fifo = dir_.path() + "_model.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  files_.push_back(fifo);
  Output f = RunRaw("model info --model " + fifo);
  EXPECT_EQ(f.code, 1);
  EXPECT_NE(f.err.find("is a FIFO"), std::string::npos) << f.err;

  // NaN hyper-parameter: refused at load, naming it.
  std::string bytes = Slurp(tiny);
  const std::string key = "llama.attention.layer_norm_rms_epsilon";
  size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::string eps_nan = bytes;
  std::memcpy(&eps_nan[at + key.size() + 4], &nan, 4);  // after the u32 type tag
  const std::string eps_model = WriteFile("eps_nan.gguf", "");
  std::ofstream(eps_model, std::ios::binary) << eps_nan;
  Output e = RunRaw("model info --model " + eps_model);
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.err.find("RMS norm epsilon is nan"), std::string::npos) << e.err;

  // NaN weights: the reply is an error, not an empty line with exit 0.
  auto gguf = runtime::GgufFile::Open(tiny);
  ASSERT_TRUE(gguf.ok());
  const runtime::GgufTensorInfo* norm = (*gguf)->FindTensor("output_norm.weight");
  ASSERT_TRUE(norm != nullptr && norm->type == runtime::GgmlType::kF32);
  at = bytes.find(std::string(reinterpret_cast<const char*>(norm->data), norm->n_bytes));
  ASSERT_NE(at, std::string::npos);
  std::string weights_nan = bytes;
  for (uint64_t i = 0; i < norm->n_elements; ++i) std::memcpy(&weights_nan[at + 4 * i], &nan, 4);
  const std::string nan_model = WriteFile("weights_nan.gguf", "");
  std::ofstream(nan_model, std::ios::binary) << weights_nan;
  Output w = RunRaw("generate --raw --max-tokens 2 --model " + nan_model + " hi");
  EXPECT_EQ(w.code, 1) << w.out;
  EXPECT_NE(w.err.find("NaN or Inf logits"), std::string::npos) << w.err;
}

}  // namespace
}  // namespace attune::replay
