// attune serve: the background service (HTTP, OpenAI-compatible). See docs/serve.md.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "attune/service/server.h"
#include "cli/cli_common.h"

namespace attune::cli {
namespace {

struct ServeFlags {
  std::string config_file, model, host, api_key_file, socket;
  int port = 8080;
  int64_t prompt_cache_mb = 64;
};

volatile sig_atomic_t g_stop_signal = 0;
void OnStopSignal(int sig) { g_stop_signal = sig; }

// SIGTERM / SIGINT stop the server gracefully. A handler (not sigwait: the
// BLAS library starts threads before main that would take the signal) sets a
// flag that one thread polls.
class SignalWatcher {
 public:
  SignalWatcher() {
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
  }
  void Start(service::Server* server) {
    thread_ = std::thread([this, server] {
      bool announced = false;
      while (!done_.load()) {
        // Stop() is repeated until Run() returns: a signal that comes before
        // the server has started listening must not be lost.
        if (g_stop_signal != 0) {
          if (!announced) std::cerr << "attune serve: stopping (signal " << int(g_stop_signal) << ")" << std::endl;
          announced = true;
          server->Stop();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  // Ends the thread; after this it no longer touches the server, which may
  // then be destroyed.
  void Join() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  ~SignalWatcher() { Join(); }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

Result<service::ServiceConfig> BuildConfig(CLI::App* cmd, const GlobalOptions& g, const ServeFlags& f) {
  service::ServiceConfig c;
  if (!f.config_file.empty()) {
    ASSIGN_OR_RETURN(c, service::LoadServiceConfig(f.config_file));
  }
  // Flags given on the command line win over the file.
  if (cmd->count("--data-dir")) c.model.data_dir = g.data_dir;
  if (cmd->count("--model")) c.model.path = f.model;
  if (cmd->count("--host")) c.server.host = f.host;
  if (cmd->count("--port")) c.server.port = f.port;
  if (cmd->count("--socket")) c.server.socket = f.socket;
  if (cmd->count("--api-key-file")) c.server.api_key_file = f.api_key_file;
  if (cmd->count("--prompt-cache-mb")) c.model.prompt_cache_mb = f.prompt_cache_mb;
  RETURN_IF_ERROR(service::ValidateServiceConfig(c));
  return c;
}

int RunServe(CLI::App* cmd, const GlobalOptions& g, const ServeFlags& f) {
  auto config = BuildConfig(cmd, g, f);
  if (!config.ok()) return PrintError(config.status());
  SignalWatcher signals;
  auto server = service::Server::Open(*config);
  if (!server.ok()) return PrintError(server.status());
  const std::string& socket = (*server)->socket_path();
  const std::string url = socket.empty() ? "http://" + config->server.host + ":" + std::to_string((*server)->port())
                                         : "unix:" + socket;
  std::cerr << "attune serve: listening on " << url << std::endl;
  if (g.json) {
    nlohmann::json j = {{"event", "listening"}, {"url", url}, {"port", (*server)->port()}};
    if (!socket.empty()) j["socket"] = socket;
    PrintJson(j);
  }
  signals.Start(server->get());
  Status st = (*server)->Run();
  // The watcher repeats Stop() while a signal is pending: it must be gone
  // before the server is destroyed (it used to call Stop() on a server being
  // destroyed, and the stop sometimes ended in SIGSEGV instead of exit 0).
  signals.Join();
  server->reset();  // finishes streams, checkpoints training, flushes the store
  std::cerr << "attune serve: stopped" << std::endl;
  if (g.json) PrintJson({{"event", "stopped"}});
  return st.ok() ? kExitOk : PrintError(st);
}

}  // namespace

void AddServeCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  auto* cmd = app.add_subcommand("serve", "Run the background service: OpenAI-compatible HTTP API, feedback, "
                                          "scheduled training (see docs/serve.md)");
  auto f = std::make_shared<ServeFlags>();
  AddCommonFlags(cmd, g);
  cmd->add_option("--config", f->config_file, "TOML configuration file (docs/serve.md lists every key)");
  cmd->add_option("--model", f->model, "GGUF file or Hugging Face directory (default: the cached default model)");
  cmd->add_option("--host", f->host, "Address to listen on (default: 127.0.0.1; others need --api-key-file)");
  cmd->add_option("--port", f->port, "TCP port; 0 picks a free one (default: 8080)");
  cmd->add_option("--socket", f->socket,
                  "Listen on this Unix domain socket (created mode 0600) instead of --host/--port")
      ->check(NonEmptyValue());
  cmd->add_option("--api-key-file", f->api_key_file, "File (mode 0600) holding the bearer token clients must send");
  cmd->add_option("--prompt-cache-mb", f->prompt_cache_mb,
                  "Memory for the keys and values of recent conversations, per adapter snapshot; 0 disables "
                  "(default: 64)");
  cmd->callback(Run(r, [cmd, &g, f] { return RunServe(cmd, g, *f); }));
}

}  // namespace attune::cli
