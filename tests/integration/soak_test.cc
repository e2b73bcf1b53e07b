// A bounded soak of the whole loop on the tiny model: a real child process
// (soak_child.cc) records feedback continuously while its device state flips
// the training window open and closed at random, thumbs-down streaks make
// the health watch roll back, and versions are promoted and rolled back by
// hand; it is killed with SIGKILL at a random moment and restarted, several
// times. Afterwards: every acknowledged event is stored, the store and the
// registry are consistent, the engine serves the registry's active version,
// and the next training window completes (none is wedged).
// ATTUNE_SOAK_ROUNDS sets the number of kills (default 5).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "attune/adapters/registry.h"
#include "attune/assistant.h"
#include "attune/replay/store.h"
#include "tests/runtime/test_util.h"

namespace attune {
namespace {

using attune::testing::Fixture;

struct Child {
  pid_t pid = -1;
  std::thread reader;
};

// Starts the child; its acknowledged ids are added to `acked` until it dies.
Child Spawn(const std::string& dir, int round, std::set<std::string>* acked, std::mutex* mu) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  Child r;
  r.pid = ::fork();
  if (r.pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    const std::string model = Fixture("models/tiny_llama.gguf"), n = std::to_string(round);
    ::execl(ATTUNE_SOAK_CHILD, ATTUNE_SOAK_CHILD, dir.c_str(), model.c_str(), n.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(fds[1]);
  r.reader = std::thread([fd = fds[0], acked, mu] {
    std::string partial;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      partial.append(buf, size_t(n));
      for (size_t pos; (pos = partial.find('\n')) != std::string::npos; partial.erase(0, pos + 1)) {
        std::string line = partial.substr(0, pos);
        if (line == "ready") continue;
        std::lock_guard<std::mutex> l(*mu);
        acked->insert(line);
      }
    }
    ::close(fd);
  });
  return r;
}

TEST(SoakTest, KilledAndRestartedLoopLosesNothingAndNeverWedges) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("attune_soak_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  int rounds = 5;
  if (const char* r = std::getenv("ATTUNE_SOAK_ROUNDS"); r && std::atoi(r) > 0) rounds = std::atoi(r);
  std::set<std::string> acked;
  std::mutex mu;
  std::mt19937 rng(2026);
  // At least `rounds` kills, and on until a window has trained at least once
  // (a loaded machine is slow), within a bound.
  auto trained_versions = [&] {
    adapters::RegistryOptions ro;
    ro.read_only = true;
    ro.create_if_missing = false;
    auto reg = adapters::Registry::Open(ro, dir + "/adapters");
    return reg.ok() ? (*reg)->List().size() : size_t(0);
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds || (trained_versions() == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(150));
       ++round) {
    Child run = Spawn(dir, round, &acked, &mu);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 2500));
    ASSERT_EQ(::kill(run.pid, SIGKILL), 0);
    int status = 0;
    ::waitpid(run.pid, &status, 0);
    run.reader.join();
    ASSERT_TRUE(WIFSIGNALED(status)) << "round " << round << ": the child exited on its own with " << WEXITSTATUS(status);
  }
  ASSERT_GT(acked.size(), 20u) << "the child recorded almost nothing";

  {
    auto store = replay::Store::Open(replay::Options{}, dir + "/replay");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (const auto& id : acked) EXPECT_TRUE((*store)->Get(id).ok()) << "acknowledged event '" << id << "' was lost";
    EXPECT_TRUE((*store)->Verify().ok());
  }
  std::string registry_active;
  size_t versions = 0, rollbacks = 0;
  {
    adapters::RegistryOptions ro;
    ro.read_only = true;
    auto reg = adapters::Registry::Open(ro, dir + "/adapters");
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    EXPECT_TRUE((*reg)->Check(/*verify_payloads=*/true).ok());
    registry_active = (*reg)->Active();
    versions = (*reg)->List().size();
    for (const auto& h : (*reg)->History()) rollbacks += h.cause != adapters::ActivationCause::kPromote && h.cause != adapters::ActivationCause::kForce;
  }
  std::printf("soak: %zu acknowledged events, %zu versions, %zu rollbacks\n", acked.size(), versions, rollbacks);
  EXPECT_GT(versions, 0u) << "no window ever trained";

  // The last restart: the engine serves the registry's active version, and a
  // window (resuming or discarding any interrupted one) completes.
  AssistantOptions o;
  o.data_dir = dir;
  o.model_path = Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";
  o.background_training = false;
  o.training.trainer.lora.rank = 4;
  o.training.trainer.lora.alpha = 8;
  o.training.trainer.max_steps = 6;
  o.training.trainer.micro_batch_size = 4;
  o.training.trainer.grad_accum_steps = 1;
  o.training.trainer.encode.max_seq_len = 48;
  o.training.trainer.anchor_examples = 0;
  o.training.trainer.forgetting_prompts = {"hi"};
  o.training.sample.max_new = 16;
  auto a = Assistant::Open(o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ((*a)->engine().adapter_version(), registry_active);
  EXPECT_EQ((*a)->GetStatus().active_version, registry_active);
  for (int i = 0; i < 4; ++i) {
    feedback::Event e;
    e.id = "final-" + std::to_string(i);
    e.user_id = "u";
    e.context = {{feedback::Role::kUser, "last?"}};
    e.signal = feedback::Demonstration{"yes"};
    ASSERT_TRUE((*a)->Record(e).ok());
  }
  auto run = (*a)->TrainNow();
  ASSERT_TRUE(run.ok()) << "a window is wedged: " << run.status().ToString();
  EXPECT_TRUE(run->trained);
  EXPECT_TRUE(run->completed);
  a->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace attune
