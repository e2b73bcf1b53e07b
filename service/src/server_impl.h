// Internal state of Server shared by its route files.
#pragma once

#include <httplib.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "attune/assistant.h"
#include "attune/service/config.h"
#include "attune/service/schedule.h"
#include "attune/service/server.h"
#include "service/src/metrics.h"
#include "service/src/openai.h"
#include "service/src/traffic.h"
#include "service/src/unix_socket.h"

namespace attune::service {

// The ids we hand out (OpenAI-style "chatcmpl-...") mapped to the
// Assistant's response ids, for feedback on a reply. Bounded; thread-safe.
class ResponseIds {
 public:
  struct Entry {
    std::string assistant_id, user;
  };
  void Put(const std::string& id, Entry e);
  bool Get(const std::string& id, Entry* e) const;

 private:
  static constexpr size_t kCapacity = 4096;
  mutable std::mutex mu_;
  std::map<std::string, Entry> map_;
  std::deque<std::string> order_;
};

struct Server::Impl {
  ServiceConfig config;
  Schedule schedule;
  std::string api_key;  // "" = no authentication
  std::unique_ptr<Traffic> traffic;
  Metrics metrics;
  ResponseIds ids;
  std::unique_ptr<Assistant> assistant;
  httplib::Server http;
  int port = 0;            // 0 when listening on a Unix socket
  UnixListener unix_socket;  // owns the socket file of --socket
  std::atomic<bool> manual_training{false};
  std::mutex stop_mu;  // guards the two flags below
  bool stop_requested = false, http_stopped = false;

  void Routes();
  void ChatRoutes();
  void AttuneRoutes();
  void AdapterRoutes();
};

// Helpers for route handlers.
void SendJson(httplib::Response& res, int status, const nlohmann::json& j);
void SendError(httplib::Response& res, const ApiError& e);
// Maps a Status from the Assistant to an OpenAI-style error.
ApiError ErrorFromStatus(const Status& s, const std::string& param = "");
// Parses a JSON body; on failure fills `res` with a 400 and returns false.
bool ParseBody(const httplib::Request& req, httplib::Response& res, nlohmann::json* out, bool allow_empty);
std::string NewCompletionId();
// Lowers the calling thread to the OS's lowest priority (nice 19) once.
void LowerThreadPriority();

}  // namespace attune::service
