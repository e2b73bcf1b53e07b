// Attune's own endpoints: feedback, training, status, forget, health, metrics.
#include <thread>

#include "attune/feedback/codec.h"
#include "service/src/server_impl.h"

namespace attune::service {

using nlohmann::json;

namespace {

// Feedback is either a whole FeedbackEvent (JSON mapping) or
// {"response_id": "chatcmpl-...", <signal>, ...}: the reply's context, text
// and adapter version are then filled in by the Assistant.
void HandleFeedback(Server::Impl* impl, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (!ParseBody(req, res, &body, /*allow_empty=*/false)) return;
  std::string assistant_id;
  if (body.contains("response_id")) {
    if (!body["response_id"].is_string()) return SendError(res, BadField("response_id", "must be a string"));
    const std::string rid = body["response_id"].get<std::string>();
    ResponseIds::Entry e;
    if (!impl->ids.Get(rid, &e)) {
      ApiError err = BadField("response_id", "'" + rid + "' is unknown (only recent replies of this process are kept)");
      err.status = 404;
      return SendError(res, err);
    }
    assistant_id = e.assistant_id;
    body.erase("response_id");
    if (!body.contains("user_id")) body["user_id"] = e.user.empty() ? "default" : e.user;
    if (!body.contains("id")) body["id"] = "fb-" + rid;
  }
  auto event = feedback::ParseEventJson(body.dump());
  if (!event.ok()) return SendError(res, ErrorFromStatus(event.status()));
  auto id = impl->assistant->Record(std::move(*event), assistant_id);
  if (!id.ok()) return SendError(res, ErrorFromStatus(id.status()));
  // 200 means stored durably (the store's write-ahead log is synced).
  SendJson(res, 200, {{"id", *id}, {"stored", true}});
}

json RunJson(const trainer::TrainingRunResult& r) {
  return {{"trained", r.trained},
          {"skipped_reason", r.skipped_reason},
          {"completed", r.completed},
          {"version", r.version},
          {"label", r.label},
          {"promoted", r.promoted},
          {"gate", r.gate_summary},
          {"report", json::parse(r.report.ToJson(), nullptr, false)}};
}

// One window now. It runs on its own thread at the lowest priority (the
// connection thread keeps its normal priority for later requests) and still
// yields to serving between micro-steps.
void HandleTrain(Server::Impl* impl, httplib::Response& res) {
  const bool manual_running = impl->manual_training.exchange(true);
  if (manual_running || impl->assistant->GetStatus().training) {
    if (!manual_running) impl->manual_training.store(false);  // only the owner clears it
    ApiError e;
    e.status = 409;
    e.type = "conflict";
    e.message = "a training window is already running (see /v1/status)";
    return SendError(res, e);
  }
  std::optional<Result<trainer::TrainingRunResult>> out;
  std::thread t([&] { out.emplace(impl->assistant->TrainNow()); });
  t.join();
  impl->manual_training.store(false);
  if (!out->ok()) return SendError(res, ErrorFromStatus(out->status()));
  const auto& r = **out;
  SendJson(res, 200, RunJson(r));
}

void HandleStatus(Server::Impl* impl, httplib::Response& res) {
  AssistantStatus s = impl->assistant->GetStatus();
  json j = {{"active_version", s.active_version},
            {"active_label", s.active_label},
            {"window", {{"open", s.window_open}, {"closed_because", s.window_closed_because}}},
            {"schedule", impl->schedule.any_time() ? "" : impl->schedule.text()},
            {"training",
             {{"running", s.training},
              {"paused_for_requests", s.training && impl->traffic->in_flight() + impl->traffic->queued() > 0},
              {"pauses", impl->traffic->pauses()},
              {"step", s.progress.step},
              {"max_steps", s.progress.max_steps},
              {"loss", s.progress.loss},
              {"tokens_per_second", s.progress.tokens_per_second},
              {"eta_seconds", s.progress.eta_seconds}}},
            {"requests", {{"in_flight", impl->traffic->in_flight()}, {"queued", impl->traffic->queued()}}},
            {"feedback", {{"stored_events", s.stored_events}, {"new_events", s.new_events}}},
            {"last_run", s.last_run ? RunJson(*s.last_run) : json(nullptr)}};
  SendJson(res, 200, j);
}

bool ValidUserId(const std::string& id) {
  if (id.empty() || id.size() > 256) return false;
  for (unsigned char ch : id) {
    if (ch < 0x20 || ch == 0x7f) return false;
  }
  return true;
}

void HandleForget(Server::Impl* impl, const httplib::Request& req, httplib::Response& res) {
  const std::string user = req.matches[1];
  if (!ValidUserId(user)) return SendError(res, BadField("user_id", "must be 1..256 printable characters"));
  auto n = impl->assistant->ForgetUser(user);
  if (!n.ok()) return SendError(res, ErrorFromStatus(n.status()));
  SendJson(res, 200, {{"user_id", user},
                      {"events_erased", n->events_erased},
                      {"affected_adapter_versions", n->affected_adapter_versions},
                      {"retired_versions", n->retired_versions},
                      {"rolled_back", n->rolled_back},
                      {"active_version", n->active_version},
                      {"retrain_scheduled", n->retrain_scheduled}});
}

}  // namespace

void Server::Impl::AttuneRoutes() {
  http.Post("/v1/feedback",
            [this](const httplib::Request& req, httplib::Response& res) { HandleFeedback(this, req, res); });
  http.Post("/v1/train", [this](const httplib::Request&, httplib::Response& res) { HandleTrain(this, res); });
  http.Get("/v1/status", [this](const httplib::Request&, httplib::Response& res) { HandleStatus(this, res); });
  http.Delete(R"(/v1/users/([^/]+))",
              [this](const httplib::Request& req, httplib::Response& res) { HandleForget(this, req, res); });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { SendJson(res, 200, {{"status", "ok"}}); });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    AssistantStatus s = assistant->GetStatus();
    Gauges g{traffic->in_flight(), traffic->queued(), s.training, s.progress.step, traffic->pauses(), s.active_label,
             s.prompt_cache_lookups, s.prompt_cache_hits, s.prompt_cache_reused_tokens, s.prompt_cache_bytes};
    res.set_content(metrics.Render(g), "text/plain; version=0.0.4");
  });
}

}  // namespace attune::service
