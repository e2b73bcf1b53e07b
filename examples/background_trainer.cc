// A long-running training service: it holds the assistant open, reads the
// device state from Linux sysfs/procfs, and trains whenever the window policy
// (a JSON file) allows, printing progress and each result.
//
//   background_trainer [--data-dir DIR] [--model PATH] [--policy FILE] [--poll-seconds N] [--once]
//
// Example policy: {"require_external_power": true, "min_battery_percent": 40,
//                  "min_idle_minutes": 10, "max_temperature_c": 42, "min_new_events": 8}
// Stops cleanly (checkpoint, flush) on SIGINT/SIGTERM. With --once it exits
// after the first window, or at once when the window is closed.
// Uses only public headers.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "attune/assistant.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  attune::AssistantOptions options;
  std::string policy_path;
  bool once = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--once")) once = true;
    else if (i + 1 < argc && !std::strcmp(argv[i], "--data-dir")) options.data_dir = argv[++i];
    else if (i + 1 < argc && !std::strcmp(argv[i], "--model")) options.model_path = argv[++i];
    else if (i + 1 < argc && !std::strcmp(argv[i], "--policy")) policy_path = argv[++i];
    else if (i + 1 < argc && !std::strcmp(argv[i], "--poll-seconds")) options.poll_interval = std::chrono::seconds(std::atoi(argv[++i]));
    else {
      std::cerr << "usage: background_trainer [--data-dir DIR] [--model PATH] [--policy FILE] [--poll-seconds N] [--once]\n";
      return 2;
    }
  }
  if (!policy_path.empty()) {
    std::ifstream in(policy_path);
    std::stringstream text;
    text << in.rdbuf();
    auto policy = attune::trainer::ParseWindowPolicy(text.str(), policy_path);
    if (!in || !policy.ok()) {
      std::cerr << "background_trainer: " << (policy.ok() ? "cannot read " + policy_path : policy.status().message()) << "\n";
      return 1;
    }
    options.window = *policy;
  }
  std::atomic<bool> trained{false};
  options.on_progress = [](const attune::trainer::TrainProgress& p) {
    std::fprintf(stderr, "step %lld/%lld loss %.4f %.1f tokens/s\n", (long long)p.step, (long long)p.max_steps, p.loss,
                 p.tokens_per_second);
  };
  options.on_trained = [&](const attune::trainer::TrainingRunResult& r) {
    if (!r.trained) std::cout << "window: nothing to train (" << r.skipped_reason << ")\n";
    else if (!r.completed) std::cout << "window closed at step " << r.report.steps << "; checkpoint kept\n";
    else std::cout << "candidate " << r.label << (r.promoted ? " promoted" : " not promoted") << ": " << r.gate_summary << "\n";
    trained.store(true);
  };
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto opened = attune::Assistant::Open(options);  // starts the background trainer thread
  if (!opened.ok()) {
    std::cerr << "background_trainer: " << opened.status().ToString() << "\n";
    return 1;
  }
  while (!g_stop.load() && !(once && trained.load())) {
    auto s = (*opened)->GetStatus();
    if (once && !s.window_open && !s.training) {
      std::string why;
      for (const auto& c : s.window_closed_because) why += (why.empty() ? "" : "; ") + c;
      std::cout << "window closed: " << why << "\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  opened->reset();  // stops training with a checkpoint, joins, flushes
  return 0;
}
