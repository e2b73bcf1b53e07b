#include "tests/replay/test_util.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace attune::replay::testing {

ScratchDir::ScratchDir(const std::string& name) {
  static std::atomic<int> counter{0};
  path_ = (std::filesystem::temp_directory_path() /
           ("attune_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
              .string();
  std::filesystem::remove_all(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

feedback::Event MakeEvent(const std::string& id, const std::string& user, size_t text_bytes) {
  feedback::Event e;
  e.id = id;
  e.user_id = user;
  e.conversation_id = "c-" + id;
  e.time = {1790000000, 0};
  std::string text = "q[" + id + "]";
  while (text.size() < text_bytes) text += static_cast<char>('a' + text.size() % 26);
  e.context = {{feedback::Role::kUser, text}};
  e.response = "a[" + id + "]";
  e.signal = feedback::Correction{"fixed[" + id + "]"};
  e.tags = {{"id", id}};
  return e;
}

Options TestOptions(const TestClock& clock) {
  Options o;
  o.durability = Durability::kRelaxed;
  o.retention.max_events = 0;
  o.retention.max_bytes = 0;
  o.retention.max_age_seconds = 0;
  o.retention.recent_window = 0;
  o.retention.reservoir_seed = 42;
  o.now = clock.fn();
  o.compact_after_forget = false;
  return o;
}

std::unique_ptr<Store> OpenOrDie(const Options& options, const std::string& path) {
  auto r = Store::Open(options, path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

}  // namespace attune::replay::testing
