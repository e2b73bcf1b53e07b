// Runs the `attune adapters` commands as a user would, on a registry built
// through the C++ API.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "attune/adapters/registry.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::PassingInput;
using testing::ScratchDir;

struct Output {
  int code = -1;
  std::string out;
};

class AdaptersCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reg = Registry::Open(RegistryOptions{}, dir_.path() + "/adapters");
    ASSERT_TRUE(reg.ok());
    Adapter a1 = MakeAdapter(1);
    StoreGateInput(PassingInput(), a1.metrics, a1.training_config);
    v1_ = *(*reg)->Add(a1);
    ASSERT_TRUE((*reg)->Promote(v1_, std::nullopt, false)->promoted);
    Adapter a2 = MakeAdapter(2);
    a2.parent_version = v1_;
    v2_ = *(*reg)->Add(a2);  // no evaluation report
  }

  // Runs `attune <args> --data-dir <dir>`; stdout only (stderr to `err_`).
  Output Attune(const std::string& args) {
    const std::string err = dir_.path() + "/stderr";
    std::string cmd = std::string(ATTUNE_CLI_PATH) + " " + args + " --data-dir " + dir_.path() + " 2>" + err;
    Output o;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
    int status = pclose(p);
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    FILE* e = fopen(err.c_str(), "r");
    err_.clear();
    while (e && (n = fread(buf, 1, sizeof buf, e)) > 0) err_.append(buf, n);
    if (e) fclose(e);
    return o;
  }

  ScratchDir dir_;
  std::string v1_, v2_, err_;
};

TEST_F(AdaptersCliTest, LsMarksTheActiveVersion) {
  Output o = Attune("adapters ls");
  ASSERT_EQ(o.code, 0) << err_;
  EXPECT_NE(o.out.find("* v1"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("  v2"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("candidate"), std::string::npos);
  EXPECT_NE(o.out.find("eval.new_loss=1"), std::string::npos) << o.out;
}

TEST_F(AdaptersCliTest, LsJsonListsEveryVersion) {
  Output o = Attune("adapters ls --json");
  ASSERT_EQ(o.code, 0) << err_;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["active"], v1_);
  ASSERT_EQ(j["versions"].size(), 2u);
  EXPECT_EQ(j["versions"][1]["parent"], v1_);
  EXPECT_EQ(j["versions"][1]["state"], "candidate");
}

TEST_F(AdaptersCliTest, ShowPrintsManifestAndHistory) {
  Output o = Attune("adapters show v1 --json");
  ASSERT_EQ(o.code, 0) << err_;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["rank"], 2);
  EXPECT_EQ(j["history"].size(), 1u);
  EXPECT_EQ(j["history"][0]["cause"], "promote");
}

TEST_F(AdaptersCliTest, PromoteWithoutReportNeedsForce) {
  Output o = Attune("adapters promote v2");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(err_.find("force"), std::string::npos) << err_;
  o = Attune("adapters promote v2 --force");
  ASSERT_EQ(o.code, 0) << err_;
  EXPECT_NE(o.out.find("promoted v2 (forced"), std::string::npos) << o.out;
  o = Attune("adapters history --json");
  EXPECT_EQ(nlohmann::json::parse(o.out).back()["cause"], "force");
}

TEST_F(AdaptersCliTest, RollbackReturnsToPreviousVersion) {
  ASSERT_EQ(Attune("adapters promote v2 --force").code, 0);
  Output o = Attune("adapters rollback --json");
  ASSERT_EQ(o.code, 0) << err_;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["to"], v1_);
  o = Attune("adapters rollback v2");  // a rejected, earlier-active version may be named
  EXPECT_EQ(o.code, 0) << err_;
}

TEST_F(AdaptersCliTest, PinUnpinAndGc) {
  EXPECT_EQ(Attune("adapters pin v2").code, 0);
  EXPECT_EQ(nlohmann::json::parse(Attune("adapters ls --json").out)["versions"][1]["pinned"], true);
  EXPECT_EQ(Attune("adapters unpin v2").code, 0);
  Output o = Attune("adapters gc --json");
  ASSERT_EQ(o.code, 0) << err_;
  EXPECT_TRUE(nlohmann::json::parse(o.out)["removed_versions"].empty());  // both within keep_last
}

TEST_F(AdaptersCliTest, UnknownVersionIsAnErrorNamingIt) {
  Output o = Attune("adapters show v9");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(err_.find("v9"), std::string::npos) << err_;
}

TEST_F(AdaptersCliTest, MissingArgumentIsUsageError) { EXPECT_EQ(Attune("adapters promote").code, 2); }

TEST_F(AdaptersCliTest, LockedRegistryIsAClearError) {
  // Another process in the middle of a mutation.
  int fd = ::open((dir_.path() + "/adapters/LOCK").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  Output o = Attune("adapters pin v1");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(err_.find("locked by another process"), std::string::npos) << err_;
  EXPECT_EQ(Attune("adapters ls").code, 0);  // reading needs no lock
  ::close(fd);
}

TEST_F(AdaptersCliTest, GcWithoutStateDeletesNoPayload) {
  const std::string reg = dir_.path() + "/adapters";
  std::filesystem::remove(reg + "/STATE");
  Output ls = Attune("adapters ls");
  EXPECT_EQ(ls.code, 1) << "said: " << ls.out;
  EXPECT_NE(err_.find("STATE is missing"), std::string::npos) << err_;
  Output gc = Attune("adapters gc");
  EXPECT_EQ(gc.code, 1) << gc.out;
  EXPECT_TRUE(std::filesystem::exists(reg + "/payloads/" + v1_ + ".adapter"));
  EXPECT_TRUE(std::filesystem::exists(reg + "/payloads/" + v2_ + ".adapter"));
  EXPECT_FALSE(std::filesystem::exists(reg + "/STATE")) << "a failed command wrote a new STATE";
}

TEST_F(AdaptersCliTest, RepairRebuildsStateAndSaysWhatWasLost) {
  std::filesystem::remove(dir_.path() + "/adapters/STATE");
  Output o = Attune("adapters repair");
  ASSERT_EQ(o.code, 0) << err_;
  EXPECT_NE(o.out.find("STATE rebuilt"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("which version was active"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("adopted " + v1_), std::string::npos) << o.out;
  auto j = nlohmann::json::parse(Attune("adapters ls --json").out);
  EXPECT_EQ(j["versions"].size(), 2u);
  EXPECT_EQ(j["active"], "");
  Output again = Attune("adapters repair --json");
  EXPECT_EQ(nlohmann::json::parse(again.out)["state_rebuilt"], false);
}

TEST_F(AdaptersCliTest, LsFailsWhenAPayloadIsMissing) {
  std::filesystem::remove(dir_.path() + "/adapters/payloads/" + v2_ + ".adapter");
  Output o = Attune("adapters ls");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.out.find("v2"), std::string::npos) << "the listing is still printed";
  EXPECT_NE(err_.find(v2_ + ".adapter' is missing"), std::string::npos) << err_;
}

TEST_F(AdaptersCliTest, WritingCommandsOnNoRegistryCreateNothing) {
  ScratchDir empty;
  for (const char* cmd : {"adapters gc", "adapters pin v1", "adapters promote v1", "adapters rollback"}) {
    const std::string line =
        std::string(ATTUNE_CLI_PATH) + " " + cmd + " --data-dir " + empty.path() + " >/dev/null 2>&1";
    int status = std::system(line.c_str());
    EXPECT_EQ(WEXITSTATUS(status), 1) << cmd;
    EXPECT_FALSE(std::filesystem::exists(empty.path() + "/adapters")) << cmd << " created a registry";
  }
}

TEST_F(AdaptersCliTest, EmptyDataDirIsAUsageError) {
  int status = std::system((std::string(ATTUNE_CLI_PATH) + " adapters ls --data-dir '' >/dev/null 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace attune::adapters
