// Progress of long work on stderr, as DESIGN.md asks of every command: a bar
// redrawn in place (carriage return) when stderr is a terminal, plain
// periodic lines otherwise, so that a captured log or a pipe gets readable
// lines instead of one line of overwritten text.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace attune::cli {

struct ProgressOptions {
  // Redraw in place. Default: whether `out` is a terminal.
  int tty = -1;
  // Without a terminal, a line every this many steps (and on the first and
  // last). Default: 5
  int64_t every = 5;
  // Printed before each line. Default: "attune: "
  std::string prefix = "attune: ";
};

class ProgressReporter {
 public:
  explicit ProgressReporter(std::FILE* out = stderr, ProgressOptions options = {});
  ~ProgressReporter();  // ends a bar line in progress

  void Update(int64_t step, int64_t max_steps, double loss, double tokens_per_second, double eta_seconds);
  // Ends the bar line (no-op without a terminal or when nothing was drawn).
  void Finish();

 private:
  std::FILE* out_;
  ProgressOptions o_;
  bool drawn_ = false;
};

}  // namespace attune::cli
