#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>

namespace attune::cli {
namespace {

std::string Bar(double frac, int width) {
  const int full = std::clamp(int(frac * width), 0, width);
  return std::string(size_t(full), '#') + std::string(size_t(width - full), '-');
}

}  // namespace

ProgressReporter::ProgressReporter(std::FILE* out, ProgressOptions options) : out_(out), o_(std::move(options)) {
  if (o_.tty < 0) o_.tty = ::isatty(::fileno(out_)) ? 1 : 0;
}

ProgressReporter::~ProgressReporter() { Finish(); }

void ProgressReporter::Update(int64_t step, int64_t max_steps, double loss, double tokens_per_second, double eta_seconds) {
  char line[256];
  std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.4f  %.1f tokens/s  ETA %.0fs", (long long)step,
                (long long)max_steps, loss, tokens_per_second, eta_seconds);
  if (o_.tty) {
    const double frac = max_steps > 0 ? double(step) / double(max_steps) : 0;
    std::fprintf(out_, "\r%s[%s] %s", o_.prefix.c_str(), Bar(frac, 30).c_str(), line);
    std::fflush(out_);
    drawn_ = true;
  } else if (step == 1 || step == max_steps || (o_.every > 0 && step % o_.every == 0)) {
    std::fprintf(out_, "%s%s\n", o_.prefix.c_str(), line);
  }
}

void ProgressReporter::Finish() {
  if (drawn_) std::fprintf(out_, "\n");
  drawn_ = false;
}

}  // namespace attune::cli
