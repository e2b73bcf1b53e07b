// Crash test: `attune serve` is killed with SIGKILL at random points (during
// start-up, while clients send feedback, while a background window trains)
// and restarted, 50 times. Every feedback answered with 200 must be in the
// store afterwards, the registry must be consistent, and the last restart
// must serve and shut down cleanly.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "attune/adapters/registry.h"
#include "attune/replay/store.h"
#include "tests/service/server_process.h"

namespace attune::service::testing {
namespace {

using nlohmann::json;

constexpr int kKills = 50;

// Sends demonstrations with unique ids until `stop`; records the acked ones.
void SendFeedback(int port, const std::string& prefix, std::atomic<bool>& stop, std::mutex& mu,
                  std::set<std::string>& acked) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(5, 0);
  for (int n = 0; !stop.load(); ++n) {
    const std::string id = prefix + "-" + std::to_string(n);
    json e = {{"id", id},
              {"user_id", "u"},
              {"context", json::array({{{"role", "user"}, {"content", "my pet?"}}})},
              {"demonstration", {{"text", "cat " + std::to_string(n % 3)}}}};
    auto r = c.Post("/v1/feedback", e.dump(), "application/json");
    if (!r) return;  // the server is gone
    if (r->status == 200) {
      std::lock_guard<std::mutex> l(mu);
      acked.insert(id);
    }
  }
}

TEST(ServeCrashTest, AcknowledgedFeedbackSurvivesFiftyKills) {
  TempDir dir;
  // Background windows open as soon as 4 new events are in, so kills also
  // land inside training (which then resumes from its checkpoint).
  const std::string config = TinyConfig("", "background = true\nquiet_seconds = 0.0\npoll_seconds = 0.05\n");
  std::mt19937 rng(13);
  std::set<std::string> acked;
  std::mutex mu;
  int killed_while_serving = 0;
  for (int k = 0; k < kKills; ++k) {
    ServerProcess server;
    ASSERT_TRUE(server.Spawn(dir.path, config));
    if (rng() % 5 == 0) {
      // Somewhere in start-up: opening the store and the registry.
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
      server.Signal(SIGKILL);
      server.Wait();
      continue;
    }
    ASSERT_TRUE(server.WaitListening()) << "restart " << k << " failed:\n" << server.Stderr();
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 2; ++t) {
      const std::string prefix = "k" + std::to_string(k) + "-" + std::to_string(t);
      clients.emplace_back([&, prefix] { SendFeedback(server.port(), prefix, stop, mu, acked); });
    }
    // Mostly short lives; every eighth is long enough for a window to finish
    // and publish, so later kills also land on registry writes.
    const int life_ms = k % 8 == 7 ? 3000 : 50 + int(rng() % 600);
    std::this_thread::sleep_for(std::chrono::milliseconds(life_ms));
    if (k == 7) {
      // One life waits (bounded) for a window to finish, so that the registry
      // certainly holds a version that the later kills must keep consistent.
      auto c = server.Client();
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (std::chrono::steady_clock::now() < end) {
        auto st = c.Get("/v1/status");
        if (st && !json::parse(st->body, nullptr, false).value("last_run", json()).is_null()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    server.Signal(SIGKILL);
    server.Wait();
    stop.store(true);
    for (auto& t : clients) t.join();
    ++killed_while_serving;
  }
  ASSERT_GT(killed_while_serving, kKills / 2);
  ASSERT_GT(acked.size(), 100u);

  // The restarted service resumes: it serves and stops cleanly.
  {
    ServerProcess server;
    ASSERT_TRUE(server.Start(dir.path, config)) << server.Stderr();
    auto c = server.Client();
    auto health = c.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    auto status = c.Get("/v1/status");
    ASSERT_TRUE(status);
    EXPECT_EQ(json::parse(status->body)["feedback"]["stored_events"].get<size_t>() >= acked.size(), true);
    server.Signal(SIGTERM);
    EXPECT_EQ(server.Wait(), 0) << server.Stderr();
  }

  auto store = replay::Store::Open(replay::Options{}, dir.path + "/data/replay");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  size_t missing = 0;
  for (const auto& id : acked) {
    if (!(*store)->Get(id).ok()) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged events";
  EXPECT_TRUE((*store)->Verify().ok());

  adapters::RegistryOptions ro;
  ro.read_only = true;
  auto reg = adapters::Registry::Open(ro, dir.path + "/data/adapters");
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  auto report = (*reg)->Check(/*verify_payloads=*/true);
  EXPECT_TRUE(report.ok()) << (report.errors.empty() ? "" : report.errors.front());
  EXPECT_GE((*reg)->List().size(), 1u) << "no window finished: the kills never met a trained version";
  std::cerr << "acknowledged feedback: " << acked.size() << ", versions: " << (*reg)->List().size()
            << ", kills while serving: " << killed_while_serving << "\n";
}

}  // namespace
}  // namespace attune::service::testing
