// Commands run as a user runs them: exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <string>

namespace attune::testing {

struct CommandOutput {
  int code = -1;  // the exit code; -1 when the command did not exit
  std::string out, err;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The exit code in a std::system status; -1 when the command did not exit.
inline int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace attune::testing
