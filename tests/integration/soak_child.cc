// The soak test's child: one Assistant on a data directory with the tiny
// model, under load until it is killed. A recorder thread stores feedback
// and prints each acknowledged id on stdout; a device thread flips the
// training window open and closed at random; a chat thread rates replies,
// with thumbs-down streaks that make the health watch roll back; an
// operator thread promotes and rolls back by hand now and then.
//
// Usage: soak_child DATA_DIR MODEL ROUND
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "attune/assistant.h"

using namespace attune;

namespace {

trainer::DeviceState Device(bool idle) {
  trainer::DeviceState s;
  s.external_power = idle;
  s.battery_percent = 90;
  s.idle_minutes = idle ? 30 : 0;
  s.temperature_c = 30;
  return s;
}

AssistantOptions Options(const std::string& dir, const std::string& model) {
  AssistantOptions o;
  o.data_dir = dir;
  o.model_path = model;
  o.chat_template = "chatml";
  o.generation.max_tokens = 4;
  o.poll_interval = std::chrono::milliseconds(50);
  o.window.min_new_events = 4;
  o.window.min_idle_minutes = 5;
  auto& t = o.training.trainer;
  t.lora.rank = 4;
  t.lora.alpha = 8;
  t.max_steps = 6;
  t.checkpoint_every_steps = 2;
  t.micro_batch_size = 4;
  t.grad_accum_steps = 1;
  t.encode.max_seq_len = 48;
  t.anchor_examples = 0;
  t.forgetting_prompts = {"hi"};
  o.training.sample.max_new = 16;
  o.gate.max_forgetting_kl = 1e9;
  o.health.window = 4;
  o.health.min_baseline_ratings = 1000;  // the fallback baseline: streaks roll back
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: soak_child DATA_DIR MODEL ROUND\n");
    return 2;
  }
  const std::string round = argv[3];
  auto opened = Assistant::Open(Options(argv[1], argv[2]));
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  Assistant& a = **opened;
  a.SetDeviceState(Device(false));
  std::printf("ready\n");
  std::fflush(stdout);
  std::atomic<bool> stop{false};
  std::thread recorder([&] {
    for (int i = 0; !stop; ++i) {
      feedback::Event e;
      e.id = "r" + round + "-" + std::to_string(i);
      e.user_id = "u";
      e.context = {{feedback::Role::kUser, "fact " + std::to_string(i % 7) + "?"}};
      e.signal = feedback::Demonstration{"answer " + std::to_string(i % 7)};
      if (a.Record(e).ok()) {
        std::printf("%s\n", e.id.c_str());  // acknowledged: durable
        std::fflush(stdout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::thread device([&] {
    std::mt19937 rng(std::stoi(round) * 7 + 1);
    while (!stop) {
      a.SetDeviceState(Device(rng() % 2));
      std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 300));
    }
  });
  std::thread chat([&] {
    std::mt19937 rng(std::stoi(round) * 7 + 2);
    for (int i = 0; !stop; ++i) {
      auto r = a.Chat({{"user", "fact 1?"}});
      if (!r.ok()) continue;
      feedback::Event e;
      e.user_id = "u";
      e.signal = feedback::Rating{rng() % 3 != 0 ? feedback::Thumb::kDown : feedback::Thumb::kUp};
      a.Record(e, r->response_id).status().IgnoreError();
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  });
  std::thread operator_([&] {
    std::mt19937 rng(std::stoi(round) * 7 + 3);
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 400));
      if (rng() % 2) {
        a.Rollback().status().IgnoreError();
      } else if (auto last = a.GetStatus().last_run; last && !last->version.empty()) {
        a.Promote(last->version, /*force=*/true).status().IgnoreError();
      }
    }
  });
  recorder.join();  // runs until killed
  return 0;
}
