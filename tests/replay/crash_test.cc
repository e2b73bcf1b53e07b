// Kills a writer process with SIGKILL at random moments and checks that
// every event it acknowledged survives, intact, with consistent indexes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <set>

#include "attune/replay/store.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

using testing::MakeEvent;
using testing::ScratchDir;

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout
};

Child Spawn(const std::string& dir, const std::string& prefix, int threads) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::string t = std::to_string(threads);
    ::execl(ATTUNE_CRASH_CHILD, ATTUNE_CRASH_CHILD, dir.c_str(), prefix.c_str(), t.c_str(),
            static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads whole lines from `fd` into `acked` until `want` lines arrived or
// EOF. `partial` carries an unfinished line between calls.
void ReadAcks(int fd, size_t want, std::set<std::string>* acked, std::string* partial) {
  char buf[4096];
  while (acked->size() < want) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    partial->append(buf, static_cast<size_t>(n));
    size_t pos;
    while ((pos = partial->find('\n')) != std::string::npos) {
      acked->insert(partial->substr(0, pos));
      partial->erase(0, pos + 1);
    }
  }
}

std::string UserOf(const std::string& id) {
  // ids are PREFIX-THREAD-I; the child's user is "u" THREAD.
  size_t last = id.rfind('-');
  size_t mid = id.rfind('-', last - 1);
  return "u" + id.substr(mid + 1, last - mid - 1);
}

TEST(CrashTest, AcknowledgedEventsSurviveSigkill) {
  constexpr int kKills = 60;
  ScratchDir dir("crash");
  std::mt19937 rng(20261124);
  std::set<std::string> all_acked;
  int killed_with_acks = 0;
  for (int k = 0; k < kKills; ++k) {
    int threads = 1 + static_cast<int>(rng() % 4);
    Child child = Spawn(dir.path(), "k" + std::to_string(k), threads);
    ASSERT_GT(child.pid, 0);
    // Kill after a random number of acknowledgements (sometimes none: the
    // kill then lands during open or recovery) plus a random delay.
    size_t want = rng() % 4 == 0 ? 0 : 1 + rng() % 60;
    std::set<std::string> acked;
    std::string partial;
    ReadAcks(child.out, want, &acked, &partial);
    ::usleep(rng() % 2000);
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited by itself with status " << WEXITSTATUS(status) << " (iteration "
                                     << k << ")";
    ReadAcks(child.out, SIZE_MAX, &acked, &partial);  // acks written before death
    ::close(child.out);
    if (!acked.empty()) ++killed_with_acks;
    all_acked.insert(acked.begin(), acked.end());

    Options o;
    o.retention.max_events = 1000000;
    o.retention.recent_window = 16;
    o.retention.max_age_seconds = 0;
    auto store = Store::Open(o, dir.path());
    ASSERT_TRUE(store.ok()) << "iteration " << k << ": " << store.status().ToString();
    for (const std::string& id : all_acked) {
      auto got = (*store)->Get(id);
      ASSERT_TRUE(got.ok()) << "iteration " << k << ": acknowledged " << id << " lost: " << got.status().ToString();
      ASSERT_EQ(got->event, MakeEvent(id, UserOf(id), 200)) << id << " is not intact";
    }
    Status v = (*store)->Verify();
    ASSERT_TRUE(v.ok()) << "iteration " << k << ": " << v.ToString();
  }
  EXPECT_GE(killed_with_acks, kKills / 2);
  EXPECT_GT(all_acked.size(), 500u);
}

}  // namespace
}  // namespace attune::replay
