// One progress reporter for every command: a bar redrawn in place on a
// terminal, plain periodic lines into a file or a pipe.
#include "cli/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace attune::cli {
namespace {

std::string Capture(int tty, int steps) {
  std::FILE* f = std::tmpfile();
  {
    ProgressOptions o;
    o.tty = tty;
    ProgressReporter r(f, o);
    for (int s = 1; s <= steps; ++s) r.Update(s, steps, 1.5, 100, 3);
  }
  std::rewind(f);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

// The bug: `attune demo` drew its training progress with carriage returns
// into a captured log, where it became one unreadable line.
TEST(ProgressReporterTest, WritesPlainPeriodicLinesWhenNotATerminal) {
  std::string out = Capture(/*tty=*/0, 12);
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_NE(out.find("attune: step 1/12  loss 1.5000"), std::string::npos) << out;
  EXPECT_NE(out.find("step 5/12"), std::string::npos);
  EXPECT_NE(out.find("step 10/12"), std::string::npos);
  EXPECT_NE(out.find("step 12/12"), std::string::npos);
  EXPECT_EQ(out.find("step 7/12"), std::string::npos) << "periodic, not every step";
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 4);
}

TEST(ProgressReporterTest, RedrawsOneBarLineOnATerminal) {
  std::string out = Capture(/*tty=*/1, 4);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 4);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "the bar line ends once";
  EXPECT_NE(out.find("[##############################] step 4/4"), std::string::npos) << out;
}

}  // namespace
}  // namespace attune::cli
