// Crash test: a child process promotes, rolls back, adds and collects
// garbage in a loop; the parent SIGKILLs it at a random instant, reopens the
// registry and checks that the state is the one before or after the
// operation in flight, and that the active version loads and verifies.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <sstream>

#include "attune/adapters/registry.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::PassingInput;
using testing::ScratchDir;

constexpr int kTrials = 60;

RegistryOptions CrashOptions() {
  RegistryOptions o;
  o.keep_last = 3;
  o.keep_history = 3;
  return o;
}

std::string Dash(const std::string& s) { return s.empty() ? "-" : s; }

void Report(int fd, const std::string& line) {
  std::string l = line + "\n";
  if (::write(fd, l.data(), l.size()) < 0) _exit(3);
}

// One operation, announced before ("B active history_size expected_active
// expected_history_size") and acknowledged after ("A active history_size").
void ChildStep(Registry& reg, std::mt19937& rng, uint32_t seed, int fd) {
  const std::string active = reg.Active();
  const size_t h = reg.History().size();
  std::vector<VersionInfo> versions = reg.List();
  auto announce = [&](const std::string& expected, size_t expected_h) {
    Report(fd, "B " + Dash(active) + " " + std::to_string(h) + " " + Dash(expected) + " " + std::to_string(expected_h));
  };
  int op = static_cast<int>(rng() % 5);
  if (op == 0) {
    Adapter a = MakeAdapter(seed);
    a.parent_version = active;
    announce(active, h);
    if (!reg.Add(a).ok()) _exit(4);
  } else if (op == 1 || op == 2) {
    std::vector<std::string> others;
    for (const auto& v : versions) {
      if (v.id != active && (op == 1 || v.state == VersionState::kCandidate)) others.push_back(v.id);
    }
    if (others.empty()) return;
    const std::string target = others[rng() % others.size()];
    announce(target, h + 1);
    auto p = op == 1 ? reg.Promote(target, std::nullopt, true) : reg.Promote(target, PassingInput(active), false);
    if (!p.ok() || !p->promoted) _exit(5);
  } else if (op == 3) {
    std::vector<std::string> earlier;
    for (const auto& e : reg.History()) {
      if (!e.to_version.empty() && e.to_version != active && reg.Get(e.to_version).ok())
        earlier.push_back(e.to_version);
    }
    if (active.empty() || earlier.empty()) return;
    RollbackRequest req;
    req.target = earlier[rng() % earlier.size()];
    announce(*req.target, h + 1);
    if (!reg.Rollback(req).ok()) _exit(6);
  } else {
    announce(active, h);
    if (!reg.Gc().ok()) _exit(7);
  }
  Report(fd, "A " + Dash(reg.Active()) + " " + std::to_string(reg.History().size()));
}

[[noreturn]] void ChildMain(const std::string& dir, uint32_t trial, int fd) {
  auto reg = Registry::Open(CrashOptions(), dir);
  if (!reg.ok()) _exit(2);
  std::mt19937 rng(trial);
  for (uint32_t i = 0;; ++i) ChildStep(**reg, rng, trial * 100000 + i, fd);
}

// Reads from `fd` until `deadline` (or EOF when deadline is unset).
void Drain(int fd, std::string& out, std::optional<std::chrono::steady_clock::time_point> deadline) {
  char buf[4096];
  for (;;) {
    int timeout = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout = static_cast<int>(left.count());
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout) <= 0) return;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return;
    out.append(buf, static_cast<size_t>(n));
  }
}

struct Expectation {
  std::set<std::string> actives;
  std::set<size_t> history_sizes;
  bool in_flight = false;
};

Expectation Parse(const std::string& log, const std::string& initial_active, size_t initial_h) {
  Expectation e{{initial_active}, {initial_h}, false};
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a partial last line: the write did not finish
    std::istringstream ls(line);
    std::string kind, a, b;
    size_t ha = 0, hb = 0;
    ls >> kind >> a >> ha;
    if (a == "-") a = "";
    if (kind == "B") {
      ls >> b >> hb;
      if (b == "-") b = "";
      e = Expectation{{a, b}, {ha, hb}, true};
    } else {
      e = Expectation{{a}, {ha}, false};
    }
  }
  return e;
}

TEST(RegistryCrash, StateIsBeforeOrAfterAndActiveLoadsAfterSigkill) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/adapters";
  {
    auto reg = Registry::Open(CrashOptions(), dir);
    ASSERT_TRUE(reg.ok());
    for (uint32_t s = 1; s <= 4; ++s) ASSERT_TRUE((*reg)->Add(MakeAdapter(s)).ok());
    ASSERT_TRUE((*reg)->Promote("v1", PassingInput(), false).ok());
  }
  std::mt19937 rng(20261124);
  int in_flight_kills = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string active;
    size_t h = 0;
    {
      auto reg = Registry::Open(CrashOptions(), dir);
      ASSERT_TRUE(reg.ok()) << reg.status().ToString();
      active = (*reg)->Active();
      h = (*reg)->History().size();
    }
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ChildMain(dir, static_cast<uint32_t>(trial + 1), fds[1]);
    }
    ::close(fds[1]);
    std::string log;
    const auto delay = std::chrono::microseconds(2000 + rng() % 25000);
    Drain(fds[0], log, std::chrono::steady_clock::now() + delay);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    Drain(fds[0], log, std::nullopt);
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status) << "; log:\n" << log;

    Expectation want = Parse(log, active, h);
    in_flight_kills += want.in_flight ? 1 : 0;
    auto reg = Registry::Open(CrashOptions(), dir);
    ASSERT_TRUE(reg.ok()) << "trial " << trial << ": " << reg.status().ToString();
    const CheckReport report = (*reg)->Check(trial % 10 == 0);
    ASSERT_TRUE(report.ok()) << "trial " << trial << ": " << report.errors[0];
    const std::string now = (*reg)->Active();
    EXPECT_TRUE(want.actives.count(now)) << "trial " << trial << ": active " << now;
    EXPECT_TRUE(want.history_sizes.count((*reg)->History().size())) << "trial " << trial;
    if (!now.empty()) {
      auto loaded = (*reg)->Load(now);
      ASSERT_TRUE(loaded.ok()) << "trial " << trial << ": " << loaded.status().ToString();
    }
  }
  std::cout << "[ info ] " << in_flight_kills << " of " << kTrials << " kills landed inside an operation\n";
  EXPECT_GT(in_flight_kills, kTrials / 4);
}

// Two processes with registries opened before either writes: every mutation
// re-reads STATE under the lock, so neither overwrites the other's versions.
TEST(RegistryProcesses, ConcurrentWritersLoseNothing) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/adapters";
  ASSERT_TRUE(Registry::Open(RegistryOptions{}, dir).ok());
  constexpr int kPerChild = 10;
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      RegistryOptions o;
      o.lock_timeout_ms = 10000;
      auto reg = Registry::Open(o, dir);
      if (!reg.ok()) _exit(2);
      for (int i = 0; i < kPerChild; ++i) {
        if (!(*reg)->Add(MakeAdapter(static_cast<uint32_t>(1000 * (c + 1) + i))).ok()) _exit(3);
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  auto reg = Registry::Open(RegistryOptions{}, dir);
  ASSERT_TRUE(reg.ok());
  std::set<uint64_t> seqs;
  for (const auto& v : (*reg)->List()) seqs.insert(v.seq);
  EXPECT_EQ((*reg)->List().size(), 2u * kPerChild);
  EXPECT_EQ(seqs.size(), 2u * kPerChild);
  EXPECT_TRUE((*reg)->Check(true).ok());
}

}  // namespace
}  // namespace attune::adapters
