#include "attune/service/server.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <random>

#include "attune/core/file.h"
#include "attune/core/log.h"
#include "service/src/server_impl.h"

namespace attune::service {

using nlohmann::json;

void ResponseIds::Put(const std::string& id, Entry e) {
  std::lock_guard<std::mutex> l(mu_);
  map_[id] = std::move(e);
  order_.push_back(id);
  while (order_.size() > kCapacity) {
    map_.erase(order_.front());
    order_.pop_front();
  }
}

bool ResponseIds::Get(const std::string& id, Entry* e) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(id);
  if (it == map_.end()) return false;
  *e = it->second;
  return true;
}

void SendJson(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

void SendError(httplib::Response& res, const ApiError& e) { SendJson(res, e.status, e.ToJson()); }

ApiError ErrorFromStatus(const Status& s, const std::string& param) {
  ApiError e;
  e.message = s.message();
  e.param = param;
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange: e.status = 400; break;
    case StatusCode::kNotFound: e.status = 404; e.code = "not_found"; break;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
    case StatusCode::kAlreadyExists: e.status = 409; e.type = "conflict"; break;
    case StatusCode::kUnavailable: e.status = 503; e.type = "unavailable"; break;
    default: e.status = 500; e.type = "server_error"; break;
  }
  return e;
}

bool ParseBody(const httplib::Request& req, httplib::Response& res, json* out, bool allow_empty) {
  if (req.body.empty() && allow_empty) {
    *out = json::object();
    return true;
  }
  *out = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    SendError(res, BadField("body", "is not valid JSON"));
    return false;
  }
  if (!out->is_object()) {
    SendError(res, BadField("body", "must be a JSON object"));
    return false;
  }
  return true;
}

std::string NewCompletionId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[48];
  std::snprintf(buf, sizeof(buf), "chatcmpl-%016llx%08llx", (unsigned long long)rng(),
                (unsigned long long)(rng() & 0xffffffffULL));
  return buf;
}

void LowerThreadPriority() {
  thread_local bool lowered = false;
  if (lowered) return;
  lowered = true;
  // On Linux a nice value is per thread (setpriority on the thread id).
  if (setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 19) != 0) {
    ATTUNE_LOG(kWarning, "could not lower the training thread's priority");
  }
}

namespace {

Result<std::string> ReadApiKey(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return NotFoundError("API key file '" + path + "' does not exist");
  if ((st.st_mode & 077) != 0) {
    return InvalidArgumentError("API key file '" + path + "' is readable by others (hint: chmod 600 " + path + ")");
  }
  ASSIGN_OR_RETURN(std::string key, ReadFile(path));
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  if (key.size() < 16) return InvalidArgumentError("API key file '" + path + "': the key must have >= 16 characters");
  return key;
}

bool SameKey(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;  // constant time: no early exit on the first difference
  for (size_t i = 0; i < a.size(); ++i) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

// The route a path belongs to, for metrics labels (ids left out).
std::string RouteLabel(const std::string& path) {
  static const char* kFixed[] = {"/v1/chat/completions", "/v1/models", "/v1/feedback", "/v1/adapters",
                                 "/v1/adapters/rollback", "/v1/train", "/v1/status", "/healthz", "/metrics"};
  for (const char* f : kFixed) {
    if (path == f) return path;
  }
  if (path.rfind("/v1/adapters/", 0) == 0) return "/v1/adapters/{version}/promote";
  if (path.rfind("/v1/users/", 0) == 0) return "/v1/users/{id}";
  return "other";
}

AssistantOptions MakeAssistantOptions(Server::Impl* impl) {
  const ServiceConfig& c = impl->config;
  AssistantOptions o;
  o.data_dir = c.model.data_dir;
  o.model_path = c.model.path;
  o.chat_template = c.model.chat_template;
  o.prompt_cache_bytes = size_t(c.model.prompt_cache_mb) << 20;
  o.background_training = c.training.background;
  o.remembered_responses = 4096;  // as many as ResponseIds keeps
  o.poll_interval = std::chrono::milliseconds(int64_t(c.training.poll_seconds * 1000));
  o.training.trainer = c.trainer;
  o.gate = c.gate;
  auto& w = o.window;
  w.require_external_power = c.training.require_external_power;
  w.min_battery_percent = c.training.min_battery_percent;
  w.min_idle_minutes = c.training.min_idle_minutes;
  w.max_temperature_c = c.training.max_temperature_c;
  w.min_new_events = c.training.min_new_events;
  w.unknown = c.training.unknown == "deny" ? trainer::UnknownPolicy::kDeny : trainer::UnknownPolicy::kAllow;
  o.host_window = [impl]() -> std::string {
    if (impl->schedule.AllowsNow()) return "";
    return "outside the schedule " + impl->schedule.text();
  };
  o.between_steps = [impl]() {
    LowerThreadPriority();
    impl->traffic->WaitForQuiet();
    // Shutting down: stop the window (checkpointed) so that a POST /v1/train
    // in progress does not hold up the exit.
    std::lock_guard<std::mutex> l(impl->stop_mu);
    return impl->stop_requested;
  };
  o.on_trained = [impl](const trainer::TrainingRunResult& r) {
    impl->metrics.CountWindow();
    impl->metrics.CountTrainingSteps(r.report.steps);
    if (r.promoted) impl->metrics.CountPromotion();
  };
  return o;
}

}  // namespace

void Server::Impl::Routes() {
  if (!api_key.empty()) {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/healthz") return httplib::Server::HandlerResponse::Unhandled;
      if (SameKey(req.get_header_value("Authorization"), "Bearer " + api_key)) {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      ApiError e;
      e.status = 401;
      e.code = "invalid_api_key";
      e.message = "Missing or incorrect API key (send Authorization: Bearer <key>)";
      SendError(res, e);
      return httplib::Server::HandlerResponse::Handled;
    });
  }
  // Errors the library produces itself (unknown route, body too large) get
  // OpenAI's error object too.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.code = "not_found";
      e.message = "no route " + req.method + " " + req.path + " (docs/serve.md lists the endpoints)";
    } else if (res.status == 413) {
      e.param = "body";
      e.message = "the request body is larger than server.max_body_bytes (" +
                  std::to_string(config.server.max_body_bytes) + ")";
    } else if (res.status == 400) {
      // The library refuses a POST it cannot frame before any handler runs.
      e.message = "the request could not be read: a POST needs a Content-Length or a chunked body "
                  "(hint: curl -d '' sends an empty one)";
    } else {
      e.message = "HTTP " + std::to_string(res.status);
    }
    SendError(res, e);
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.CountRequest(RouteLabel(req.path), res.status);
  });
  ChatRoutes();
  AttuneRoutes();
  AdapterRoutes();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Server>> Server::Open(const ServiceConfig& config) {
  RETURN_IF_ERROR(ValidateServiceConfig(config));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ASSIGN_OR_RETURN(impl->schedule, Schedule::Parse(config.training.schedule));
  if (!config.server.api_key_file.empty()) {
    ASSIGN_OR_RETURN(impl->api_key, ReadApiKey(config.server.api_key_file));
  }
  const auto& s = config.server;
  impl->traffic = std::make_unique<Traffic>(s.max_concurrent, s.max_queue, config.training.quiet_seconds);
  if (!s.socket.empty()) {
    // Before the Assistant starts threads: the socket file is created under
    // a process-wide umask.
    ASSIGN_OR_RETURN(impl->unix_socket, UnixListener::Listen(s.socket));
  }
  ASSIGN_OR_RETURN(impl->assistant, Assistant::Open(MakeAssistantOptions(impl.get())));
  impl->http.set_payload_max_length(size_t(s.max_body_bytes));
  // Enough connection threads for every admitted request plus the
  // management endpoints; generation concurrency is bounded by Traffic.
  const size_t threads = size_t(s.max_concurrent + s.max_queue + 8);
  impl->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl->Routes();
  if (!s.socket.empty()) {
    // cpp-httplib 0.11 listens only on TCP. It binds a loopback port, and
    // the Unix socket then takes over that listening descriptor (dup2), so
    // the library's accept loop serves the socket and the port is closed
    // before anything is served on it.
    int library_fd = -1;
    impl->http.set_socket_options([&library_fd](socket_t fd) { library_fd = fd; });
    if (impl->http.bind_to_any_port("127.0.0.1") < 0 || library_fd < 0) {
      return UnavailableError("cannot start the HTTP server for the socket " + s.socket);
    }
    RETURN_IF_ERROR(impl->unix_socket.MoveDescriptorTo(library_fd));
    impl->port = 0;
    return std::unique_ptr<Server>(new Server(std::move(impl)));
  }
  int port = s.port;
  if (port == 0) {
    port = impl->http.bind_to_any_port(s.host);
  } else if (!impl->http.bind_to_port(s.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return UnavailableError("cannot listen on " + s.host + ":" + std::to_string(s.port) +
                            " (hint: the port is taken, or choose another with --port)");
  }
  impl->port = port;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() {
  Stop();
  // Releases a training thread that waits for quiet, so the Assistant's
  // destructor can stop it at the next micro-step (with a checkpoint).
  impl_->traffic->Shutdown();
  impl_->assistant.reset();
}

int Server::port() const { return impl_->port; }

const std::string& Server::socket_path() const { return impl_->unix_socket.path(); }

Status Server::Run() {
  {
    std::lock_guard<std::mutex> l(impl_->stop_mu);
    if (impl_->stop_requested) return Status::Ok();
  }
  if (!impl_->http.listen_after_bind()) {
    std::lock_guard<std::mutex> l(impl_->stop_mu);
    if (!impl_->stop_requested) return UnavailableError("the HTTP server stopped unexpectedly");
  }
  return Status::Ok();
}

// The library's stop() only acts on a running server; a Stop() that comes
// before Run() starts listening is remembered and repeated by the caller.
void Server::Stop() {
  impl_->traffic->Shutdown();  // a training window waiting for quiet goes on to stop
  std::lock_guard<std::mutex> l(impl_->stop_mu);
  impl_->stop_requested = true;
  if (!impl_->http_stopped && impl_->http.is_running()) {
    impl_->http.stop();
    impl_->http_stopped = true;
  }
}

}  // namespace attune::service
