// Utilities shared by the replay tests: scratch directories, events, a clock.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "attune/feedback/event.h"
#include "attune/replay/store.h"

namespace attune::replay::testing {

// A fresh directory under the system temp dir, removed on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A deterministic, valid event whose contents follow from its id, so a
// reader can check it is intact. `text_bytes` sizes the user message.
feedback::Event MakeEvent(const std::string& id, const std::string& user = "u-1", size_t text_bytes = 32);

// A settable clock, by default 2027-01-15T08:00:00Z.
struct TestClock {
  std::shared_ptr<std::atomic<int64_t>> seconds = std::make_shared<std::atomic<int64_t>>(1800000000);
  std::function<feedback::Timestamp()> fn() const {
    auto s = seconds;
    return [s] { return feedback::Timestamp{s->load(), 0}; };
  }
};

// Options for fast hermetic tests: relaxed durability, fixed seed, a test
// clock, no retention bounds unless a test sets them.
Options TestOptions(const TestClock& clock = TestClock());

// Opens the store, failing the current test (and returning null) on error.
std::unique_ptr<Store> OpenOrDie(const Options& options, const std::string& path);

}  // namespace attune::replay::testing
