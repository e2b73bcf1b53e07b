// Server: `attune serve`. Runs one Assistant behind an HTTP server
// (cpp-httplib): the OpenAI chat API and Attune's own endpoints (see
// docs/serve.md), with training scheduled in windows that yield to serving.
//
// Thread safety: Stop() may be called from any thread; the rest from one.
#pragma once

#include <memory>

#include "attune/core/result.h"
#include "attune/service/config.h"

namespace attune::service {

class Server {
 public:
  // Validates `config`, reads the API key file (which must be mode 0600),
  // opens the Assistant (model, store, registry) and binds the port. Errors
  // name the part that failed; nothing is served on failure.
  static Result<std::unique_ptr<Server>> Open(const ServiceConfig& config);
  // Stops serving and the trainer (checkpointed) and flushes the store.
  ~Server();

  // The bound port (useful with port 0); 0 on a Unix socket.
  int port() const;
  // The Unix socket listened on (server.socket), or "".
  const std::string& socket_path() const;
  // Serves until Stop(). Then open requests and streams finish before it
  // returns.
  Status Run();
  // Stops accepting connections; Run() returns once open requests are done.
  // A Stop() before Run() has started listening makes Run() return at once
  // when called later; one that races with its start may be lost, so a
  // caller that must not lose it repeats Stop() until Run() returns.
  void Stop();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attune::service
