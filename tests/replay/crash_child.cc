// Crash-test child: appends events in sync mode from several threads and
// writes each acknowledged id to stdout, one per line, until it is killed.
//   replay_crash_child STORE_DIR ID_PREFIX THREADS
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "attune/replay/store.h"
#include "tests/replay/test_util.h"

int main(int argc, char** argv) {
  using namespace attune::replay;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s STORE_DIR ID_PREFIX THREADS\n", argv[0]);
    return 2;
  }
  Options o;
  o.durability = Durability::kSync;
  // A small window so that events move into the reservoir (never full here,
  // so nothing acknowledged is evicted).
  o.retention.max_events = 1000000;
  o.retention.recent_window = 16;
  o.retention.max_age_seconds = 0;
  o.retention.reservoir_seed = 1;
  auto store = Store::Open(o, argv[1]);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 3;
  }
  std::string prefix = argv[2];
  int threads = std::stoi(argv[3]);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        std::string id = prefix + "-" + std::to_string(t) + "-" + std::to_string(i);
        auto r = (*store)->Append(testing::MakeEvent(id, "u" + std::to_string(t), 200));
        if (!r.ok()) {
          std::fprintf(stderr, "append %s: %s\n", id.c_str(), r.status().ToString().c_str());
          _exit(4);
        }
        std::string line = id + "\n";  // one write() below PIPE_BUF: atomic
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
      }
    });
  }
  for (auto& w : workers) w.join();
  return 0;
}
