// attune-run as a process: the replies of `attune generate`, no LibTorch in
// its address space, adapters from payload files, clear errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attune/adapters/payload.h"
#include "attune/runtime/lean_engine.h"
#include "tests/adapters/test_util.h"
#include "tests/runtime/random_adapter.h"
#include "tests/cli/command_util.h"

namespace attune::cli {
namespace {

using Output = ::attune::testing::CommandOutput;
using ::attune::testing::ExitCode;
using ::attune::testing::Slurp;

class RunCliTest : public ::testing::Test {
 protected:
  Output Run(const std::string& binary, const std::string& args) {
    const std::string out = dir_.path() + "/out", err = dir_.path() + "/err";
    const std::string cmd = binary + " " + args + " --data-dir " + dir_.path() + "/data </dev/null >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    return Output{ExitCode(status), Slurp(out), Slurp(err)};
  }
  nlohmann::json Json(const std::string& binary, const std::string& args) {
    Output o = Run(binary, args + " --json");
    EXPECT_EQ(o.code, 0) << binary << " " << args << ": " << o.err;
    return o.code == 0 ? nlohmann::json::parse(o.out) : nlohmann::json();
  }
  const std::string tiny_ = std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_chat.gguf";
  adapters::testing::ScratchDir dir_;
};

TEST_F(RunCliTest, RepliesAsAttuneGenerateDoes) {
  for (const char* prompt : {"sieil?", "enrmse?", "dog?"}) {
    const std::string args = std::string("generate --adapter none --max-tokens 24 --model ") + tiny_ + " '" + prompt + "'";
    nlohmann::json lean = Json(ATTUNE_RUN, args), full = Json(ATTUNE_CLI, args);
    EXPECT_EQ(lean["text"], full["text"]) << prompt;
    EXPECT_EQ(lean["tokens"], full["tokens"]) << prompt;
    EXPECT_EQ(lean["finish_reason"], full["finish_reason"]) << prompt;
  }
  // The trained tiny model's own answer (transformers' greedy reply).
  EXPECT_EQ(Json(ATTUNE_RUN, "generate --model " + tiny_ + " sieil?")["text"].get<std::string>().substr(0, 5), "ecefi");
  // Raw text, streamed (no --json).
  Output raw = Run(ATTUNE_RUN, "generate --raw --max-tokens 4 --model " + tiny_ + " hello");
  EXPECT_EQ(raw.code, 0) << raw.err;
  EXPECT_FALSE(raw.out.empty());
}

TEST_F(RunCliTest, ServesAnAdapterFileAsAttuneGenerateDoes) {
  runtime::LeanEngineOptions o;
  o.model_path = tiny_;
  auto engine = runtime::LeanEngine::Open(o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const std::string file = dir_.path() + "/adapter.safetensors";
  ASSERT_TRUE(adapters::WritePayloadFile(file, testing::RandomAdapter((*engine)->base_info(), 11)).ok());
  const std::string args = "generate --max-tokens 12 --adapter " + file + " --model " + tiny_ + " dog?";
  nlohmann::json lean = Json(ATTUNE_RUN, args), full = Json(ATTUNE_CLI, args);
  EXPECT_FALSE(lean["adapter_version"].get<std::string>().empty());
  EXPECT_EQ(lean["adapter_version"], full["adapter_version"]);
  EXPECT_EQ(lean["text"], full["text"]);
  nlohmann::json base = Json(ATTUNE_RUN, "generate --max-tokens 12 --adapter none --model " + tiny_ + " dog?");
  EXPECT_NE(lean["text"], base["text"]) << "the adapter changed nothing: the comparison proves nothing";
}

// A chat session held open: after its first reply, the process's mappings
// hold no LibTorch library (the point of attune-run: serving memory).
TEST_F(RunCliTest, ChatProcessMapsNoLibTorch) {
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::close(in[1]);
    ::close(out[0]);
    ::execl(ATTUNE_RUN, ATTUNE_RUN, "chat", "--max-tokens", "8", "--model", tiny_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  const std::string line = "sieil?\n";
  ASSERT_EQ(::write(in[1], line.data(), line.size()), ssize_t(line.size()));
  std::string reply;
  char c;
  while (reply.find('\n') == std::string::npos && ::read(out[0], &c, 1) == 1) reply += c;
  EXPECT_EQ(reply.substr(0, 5), "ecefi") << reply;
  const std::string maps = Slurp("/proc/" + std::to_string(pid) + "/maps");
  EXPECT_NE(maps.find("libstdc++"), std::string::npos) << "the mappings were not read";
  EXPECT_EQ(maps.find("libtorch"), std::string::npos);
  EXPECT_EQ(maps.find("libc10"), std::string::npos);
  ::close(in[1]);  // end of input: the session ends
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ::close(out[0]);
}

TEST_F(RunCliTest, BadInputIsAClearErrorWithExitCodeOne) {
  Output missing = Run(ATTUNE_RUN, "generate --model /nonexistent/model.gguf hi");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/model.gguf"), std::string::npos) << missing.err;
  Output dir = Run(ATTUNE_RUN, std::string("generate --model ") + ATTUNE_FIXTURES_DIR + "/models/tiny_llama hi");
  EXPECT_EQ(dir.code, 1);
  EXPECT_NE(dir.err.find("GGUF files only"), std::string::npos) << dir.err;
  Output adapter = Run(ATTUNE_RUN, "generate --adapter /nonexistent.safetensors --model " + tiny_ + " hi");
  EXPECT_EQ(adapter.code, 1) << adapter.err;
  EXPECT_NE(adapter.err.find("--adapter"), std::string::npos) << adapter.err;
  // Usage errors: exit code 2 (there is no --weights: the weights stay quantized).
  EXPECT_EQ(Run(ATTUNE_RUN, "generate --weights fp32 --model " + tiny_ + " hi").code, 2);
  EXPECT_EQ(Run(ATTUNE_RUN, "generate --model " + tiny_).code, 2);
  EXPECT_EQ(Run(ATTUNE_RUN, "train").code, 2);
  // The help says what it reads.
  Output help = Run(ATTUNE_RUN, "generate --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("GGUF file"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("Hugging Face"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace attune::cli
