// `attune train` as a process: its flags reach the trainer and its report.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/adapters/test_util.h"
#include "tests/cli/command_util.h"

namespace attune::cli {
namespace {

using Output = ::attune::testing::CommandOutput;
using ::attune::testing::ExitCode;
using ::attune::testing::Slurp;

class TrainCliTest : public ::testing::Test {
 protected:
  // Runs `attune ARGS` on the data directory `data` under the scratch dir.
  Output Run(const std::string& args, const std::string& data = "data") {
    const std::string out = dir_.path() + "/out", err = dir_.path() + "/err";
    const std::string cmd = std::string(ATTUNE_CLI) + " " + args + " --data-dir " + dir_.path() + "/" + data + " </dev/null >" +
                            out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    return Output{ExitCode(status), Slurp(out), Slurp(err)};
  }
  // 24 corrections: enough for a held-out slice (every 10th of >= 20).
  void ImportFeedback(const std::string& data = "data") {
    const std::string events = dir_.path() + "/events.jsonl";
    std::ofstream f(events);
    for (int i = 0; i < 24; ++i) {
      f << nlohmann::json({{"id", "t-" + std::to_string(i)},
                           {"user_id", "u-1"},
                           {"context", {{{"role", "user"}, {"content", "my pet " + std::to_string(i) + "?"}}}},
                           {"response", "no"},
                           {"correction", {{"text", "Pixel " + std::to_string(i % 6)}}}})
                .dump()
        << "\n";
    }
    f.close();
    Output o = Run("feedback import " + events, data);
    ASSERT_EQ(o.code, 0) << o.err;
  }
  const std::string tiny_ = std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_chat.gguf";
  adapters::testing::ScratchDir dir_;
};

TEST_F(TrainCliTest, EarlyStoppingFlagsReachTheTrainerAndItsReport) {
  ImportFeedback();
  Output o = Run("train --model " + tiny_ + " --max-steps 8 --early-stopping 2 --eval-every 2 --no-promote --json");
  ASSERT_EQ(o.code, 0) << o.err;
  const nlohmann::json report = nlohmann::json::parse(o.out)["report"];
  // Measured at steps 2, 4, 6, ... (fewer if it stopped early).
  const auto& curve = report["heldout_curve"];
  ASSERT_GE(curve.size(), 3u) << report.dump();
  for (size_t i = 0; i < curve.size(); ++i) EXPECT_EQ(curve[i][0].get<int64_t>(), int64_t(2 * (i + 1)));
  double lowest = curve[0][1];
  int64_t at = curve[0][0];
  for (const auto& m : curve) {
    if (m[1].get<double>() < lowest) lowest = m[1], at = m[0];
  }
  EXPECT_EQ(report["kept_step"].get<int64_t>(), at);
  EXPECT_NEAR(report["heldout_loss"]["candidate"].get<double>(), lowest, 1e-6);

  Output bad = Run("train --model " + tiny_ + " --early-stopping 1 --eval-every 0");
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--eval-every"), std::string::npos) << bad.err;
}

// --micro-batch sets the micro-batch the report gives (without it the
// memory budget picks 16 for this tiny model); out of range is a usage
// error naming the flag.
TEST_F(TrainCliTest, MicroBatchFlagReachesTheTrainerAndItsReport) {
  ImportFeedback();
  Output o = Run("train --model " + tiny_ + " --max-steps 2 --micro-batch 3 --no-checkpointing --no-promote --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(nlohmann::json::parse(o.out)["report"]["micro_batch_size"].get<int64_t>(), 3) << o.out;
  for (const std::string v : {"-1", "257", "two"}) {
    Output bad = Run("train --model " + tiny_ + " --micro-batch " + v);
    EXPECT_EQ(bad.code, 2) << v << ": " << bad.err;
    EXPECT_NE(bad.err.find("--micro-batch"), std::string::npos) << bad.err;
  }
}

// --graph-memory-mb reaches the trainer (its notes say how many layers kept
// their graph); a negative budget or a word is a usage error naming the flag.
TEST_F(TrainCliTest, GraphMemoryFlagReachesTheTrainerAndItsReport) {
  ImportFeedback();
  Output o = Run("train --model " + tiny_ + " --max-steps 2 --graph-memory-mb 1000 --no-promote --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_NE(nlohmann::json::parse(o.out)["report"].dump().find("kept the graph of their top"), std::string::npos) << o.out;
  for (const std::string v : {"-1", "lots"}) {
    Output bad = Run("train --model " + tiny_ + " --graph-memory-mb " + v);
    EXPECT_EQ(bad.code, 2) << v << ": " << bad.err;
    EXPECT_NE(bad.err.find("--graph-memory-mb"), std::string::npos) << bad.err;
  }
}

// --null-space reaches the trainer (its report says how many directions it
// held); 1 and a word are usage errors naming the flag.
TEST_F(TrainCliTest, NullSpaceFlagReachesTheTrainerAndItsReport) {
  ImportFeedback();
  Output o = Run("train --model " + tiny_ + " --max-steps 2 --null-space 0.9 --no-promote --json");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_NE(nlohmann::json::parse(o.out)["report"].dump().find("null-space constraint: A reads none of"), std::string::npos)
      << o.out;
  Output off = Run("train --model " + tiny_ + " --max-steps 2 --no-promote --json");
  ASSERT_EQ(off.code, 0) << off.err;
  EXPECT_EQ(off.out.find("null-space"), std::string::npos) << "off by default";
  for (const std::string v : {"1", "-0.5", "most"}) {
    Output bad = Run("train --model " + tiny_ + " --null-space " + v);
    EXPECT_EQ(bad.code, 2) << v << ": " << bad.err;
    EXPECT_NE(bad.err.find("--null-space"), std::string::npos) << bad.err;
  }
}

// --scope fits a scope on the window's messages (the report says so, and
// the candidate keeps it); a PEFT export of that candidate holds the weights
// only, and says so on stderr and in its JSON.
TEST_F(TrainCliTest, ScopeFlagFitsAScopeThatAPeftExportSaysItDrops) {
  ImportFeedback();
  Output o = Run("train --model " + tiny_ + " --max-steps 2 --scope --no-promote --json");
  ASSERT_EQ(o.code, 0) << o.err;
  const nlohmann::json j = nlohmann::json::parse(o.out);
  EXPECT_NE(j["report"].dump().find("scope fitted on"), std::string::npos) << o.out;
  const std::string version = j["version"];
  ASSERT_FALSE(version.empty()) << o.out;
  Output e = Run("export " + version + " --format peft -o " + dir_.path() + "/peft --model " + tiny_ + " --json");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["scope_dropped"], true) << e.out;
  EXPECT_NE(e.err.find("has a scope"), std::string::npos) << e.err;
  // Without the flag (the same feedback in a second data directory): no
  // scope, nothing dropped.
  ImportFeedback("data2");
  Output off = Run("train --model " + tiny_ + " --max-steps 2 --no-promote --json", "data2");
  ASSERT_EQ(off.code, 0) << off.err;
  const nlohmann::json k = nlohmann::json::parse(off.out);
  EXPECT_EQ(k["report"].dump().find("scope fitted"), std::string::npos) << off.out;
  e = Run("export " + k["version"].get<std::string>() + " --format peft -o " + dir_.path() + "/peft2 --model " + tiny_ +
          " --json", "data2");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["scope_dropped"], false) << e.out;
}

}  // namespace
}  // namespace attune::cli
