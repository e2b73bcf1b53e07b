// A real `attune serve` process for the service tests: started with a TOML
// config on a free loopback port, reached over HTTP, stopped with a signal.
#pragma once

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace attune::service::testing {

inline std::string Fixture(const std::string& rel) { return std::string(ATTUNE_FIXTURES_DIR) + "/" + rel; }
inline std::string AttuneBinary() { return std::string(ATTUNE_BINARY_DIR) + "/cli/attune"; }

struct TempDir {
  std::string path;
  TempDir() {
    std::mt19937_64 rng{std::random_device{}()};
    path = (std::filesystem::temp_directory_path() / ("attune-serve-" + std::to_string(rng()))).string();
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The tiny model, trained quickly; training windows open on new feedback
// alone (no power or idle requirement) so tests decide when data arrives.
// `extra_training` lines replace the defaults of the keys they set.
inline std::string TinyConfig(const std::string& extra_server = "", std::string extra_training = "") {
  for (const char* d : {"background = false", "poll_seconds = 0.1", "quiet_seconds = 0.2", "max_steps = 30"}) {
    const std::string key = std::string(d).substr(0, std::string(d).find(' '));
    if (extra_training.find(key) == std::string::npos) extra_training += std::string("\n") + d;
  }
  return "[server]\nport = 0\n" + extra_server + "\n[model]\npath = \"" + Fixture("models/tiny_llama.gguf") +
         "\"\nchat_template = \"chatml\"\ndefault_max_tokens = 8\n"
         "[training]\nrequire_external_power = false\n"
         "min_idle_minutes = 0\nmax_temperature_c = 1000\nmin_new_events = 4\n" +
         extra_training +
         "\n\n[trainer]\nrank = 4\nalpha = 8\ndropout = 0.0\nlearning_rate = 0.01\nmicro_batch_size = 4\n"
         "grad_accum_steps = 1\nmax_seq_len = 64\nanchor_examples = 2\nanchor_max_tokens = 8\n"
         "forgetting_prompts = [\"hi\"]\n[gate]\nmax_forgetting_kl = 100\n";
}

class ServerProcess {
 public:
  // Starts `attune serve --config <dir>/serve.toml --data-dir <dir>/data
  // --json [args]` and waits (bounded) for its "listening" line.
  bool Start(const std::string& dir, const std::string& config, const std::vector<std::string>& args = {}) {
    return Spawn(dir, config, args) && WaitListening();
  }

  // Starts the process without waiting for it to listen.
  bool Spawn(const std::string& dir, const std::string& config, const std::vector<std::string>& args = {}) {
    const std::string config_path = dir + "/serve.toml";
    std::ofstream(config_path) << config;
    stderr_path_ = dir + "/serve.stderr";
    int out[2];
    if (pipe(out) != 0) return false;
    std::vector<std::string> argv = {AttuneBinary(), "serve", "--config", config_path, "--data-dir", dir + "/data",
                                     "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      FILE* err = std::fopen(stderr_path_.c_str(), "a");
      if (err) dup2(fileno(err), 2);
      close(out[0]);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = fdopen(out[0], "r");
    return pid_ > 0;
  }

  // Reads the "listening" line (false when the process ends first).
  bool WaitListening() {
    char line[512];
    if (!std::fgets(line, sizeof(line), out_)) return false;  // the process ended
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("port")) return false;
    port_ = j["port"].get<int>();
    return true;
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (out_) std::fclose(out_);
  }
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  httplib::Client Client() const {
    httplib::Client c("127.0.0.1", port_);
    // A training window on a loaded 2-core machine can take minutes.
    c.set_read_timeout(300, 0);
    return c;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }
  // Waits for the process to end; returns its exit code, or 128 + signal.
  int Wait() {
    int status = 0;
    if (pid_ <= 0 || waitpid(pid_, &status, 0) != pid_) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // Wait() bounded by `seconds`; -2 when the process is still running.
  int WaitFor(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -2;
  }
  std::string Stderr() const {
    std::ifstream f(stderr_path_);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int port_ = 0;
  std::string stderr_path_;
};

}  // namespace attune::service::testing
