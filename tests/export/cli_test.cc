// Runs `attune import | export | merge | keys | sync` as a user would, on two
// data directories and the tiny test model (real processes, real files).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attune/core/file.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Output {
  int code = -1;
  std::string out, err;
};

class ExportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("attune_export_cli_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Dir(const std::string& rel) const { return (root_ / rel).string(); }

  // Runs `attune <args> --data-dir <root>/<device>`.
  Output Attune(const std::string& device, const std::string& args) {
    const std::string err = Dir("stderr");
    std::string cmd = std::string(ATTUNE_CLI_PATH) + " " + args + " --data-dir " + Dir(device) + " 2>" + err;
    Output o;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
    int status = pclose(p);
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    auto e = ReadFile(err);
    if (e.ok()) o.err = *e;
    return o;
  }

  static std::string Model() { return std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_llama"; }
  static std::string PeftFixture() { return std::string(ATTUNE_FIXTURES_DIR) + "/export/peft_trained"; }

  fs::path root_;
};

TEST_F(ExportCliTest, ImportExportRoundTripThroughEveryFormat) {
  Output o = Attune("phone", "import " + PeftFixture() + " --model " + Model() + " --json");
  ASSERT_EQ(o.code, 0) << o.err;
  const std::string v1 = json::parse(o.out)["version"];
  for (const char* fmt : {"peft", "gguf", "bundle"}) {
    const std::string out = Dir(std::string("out.") + fmt);
    o = Attune("phone", "export v1 --format " + std::string(fmt) + " -o " + out + " --model " + Model() + " --json");
    ASSERT_EQ(o.code, 0) << fmt << ": " << o.err;
    EXPECT_EQ(json::parse(o.out)["scope_dropped"], false) << "a PEFT import has no scope";
    o = Attune("phone", "import " + out + " --model " + Model() + " --json");
    ASSERT_EQ(o.code, 0) << fmt << ": " << o.err;
    EXPECT_EQ(json::parse(o.out)["format"], fmt);
  }
  // The bundle carries the payload unchanged: importing it finds v1 again.
  EXPECT_EQ(json::parse(o.out)["version"], v1);
}

TEST_F(ExportCliTest, UntrustedBundleIsRefusedAndTheRegistryIsUnchanged) {
  ASSERT_EQ(Attune("phone", "import " + PeftFixture() + " --model " + Model()).code, 0);
  ASSERT_EQ(Attune("phone", "export v1 --format bundle -o " + Dir("v1.bundle")).code, 0);
  Output o = Attune("laptop", "import " + Dir("v1.bundle"));
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("not trusted"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("v1.bundle"), std::string::npos) << o.err;
  EXPECT_EQ(json::parse(Attune("laptop", "adapters ls --json").out)["versions"].size(), 0u);

  // Trusted: accepted, and --force promotes it.
  Output key = Attune("phone", "keys show");
  std::ofstream(Dir("phone.pub")) << key.out;
  ASSERT_EQ(Attune("laptop", "keys trust " + Dir("phone.pub")).code, 0);
  o = Attune("laptop", "import " + Dir("v1.bundle") + " --force --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(json::parse(o.out)["promoted"].get<bool>());

  // Revoked: refused again.
  const std::string id = json::parse(Attune("phone", "keys show --json").out)["device_id"];
  ASSERT_EQ(Attune("laptop", "keys revoke " + id).code, 0);
  json ls = json::parse(Attune("laptop", "keys ls --json").out);
  ASSERT_EQ(ls["peers"].size(), 1u);
  EXPECT_TRUE(ls["peers"][0]["revoked"].get<bool>());
  o = Attune("laptop", "import " + Dir("v1.bundle"));
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("revoked"), std::string::npos) << o.err;
}

TEST_F(ExportCliTest, DeviceKeyIsCreatedPrivate) {
  ASSERT_EQ(Attune("phone", "keys show").code, 0);
  struct stat st{};
  ASSERT_EQ(::stat(Dir("phone/keys/device.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(ExportCliTest, MergeAddsACandidateAndReportsTheSvdError) {
  ASSERT_EQ(Attune("phone", "import " + PeftFixture() + " --model " + Model()).code, 0);
  ASSERT_EQ(Attune("phone", "export v1 --format gguf -o " + Dir("a.gguf") + " --model " + Model()).code, 0);
  ASSERT_EQ(Attune("phone", "import " + Dir("a.gguf") + " --model " + Model()).code, 0);
  Output o = Attune("phone", "merge v1 v2 --method svd --rank 2 --json");
  ASSERT_EQ(o.code, 0) << o.err;
  json j = json::parse(o.out);
  EXPECT_EQ(j["rank"], 2);
  EXPECT_GT(j["max_relative_error"].get<double>(), 0.0);
  EXPECT_EQ(j["label"], "v3");
  o = Attune("phone", "merge v1 v2 --method nope");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("--method"), std::string::npos);
}

TEST_F(ExportCliTest, BadInputExitsOneAndNamesTheFile) {
  std::ofstream(Dir("junk.bin")) << "not an adapter";
  Output o = Attune("phone", "import " + Dir("junk.bin") + " --model " + Model());
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("junk.bin"), std::string::npos) << o.err;
  o = Attune("phone", "export v9 --format peft -o " + Dir("x") + " --model " + Model());
  EXPECT_EQ(o.code, 1);
  EXPECT_FALSE(fs::exists(Dir("x")));
  EXPECT_EQ(Attune("phone", "export").code, 2) << "missing arguments are bad usage";
}

TEST_F(ExportCliTest, SyncExchangesPromotedVersions) {
  fs::create_directories(Dir("shared"));
  ASSERT_EQ(Attune("phone", "import " + PeftFixture() + " --model " + Model() + " --force").code, 0);
  std::ofstream(Dir("phone.pub")) << Attune("phone", "keys show").out;
  ASSERT_EQ(Attune("laptop", "keys trust " + Dir("phone.pub")).code, 0);
  Output o = Attune("phone", "sync " + Dir("shared") + " --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(json::parse(o.out)["exported"].size(), 1u);
  o = Attune("laptop", "sync " + Dir("shared") + " --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(json::parse(o.out)["imported"].size(), 1u);
  o = Attune("laptop", "sync " + Dir("shared") + " --json");
  EXPECT_EQ(json::parse(o.out)["imported"].size(), 0u) << "idempotent";
}

}  // namespace
}  // namespace attune::export_
