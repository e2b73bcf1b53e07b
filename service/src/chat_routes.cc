// POST /v1/chat/completions and GET /v1/models.
#include <chrono>
#include <ctime>

#include "service/src/server_impl.h"

namespace attune::service {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// One chat request from admission to the last byte; shared by the handler
// and (for streams) the content provider that runs later.
struct ChatJob {
  Server::Impl* impl;
  ChatRequest request;
  Assistant::PinnedAdapter pinned;
  ReplyHeader header;
  std::unique_ptr<Traffic::Ticket> ticket;

  runtime::GenerateOptions Options() const {
    runtime::GenerateOptions o = request.generation;
    o.adapter = pinned.snapshot;
    o.use_active_adapter = pinned.snapshot != nullptr;
    return o;
  }

  Result<ChatReply> Run(const runtime::TextCallback& on_text) {
    ticket->WaitToRun();
    auto t0 = Clock::now();
    auto r = impl->assistant->Chat(request.messages, Options(), on_text);
    if (r.ok()) {
      impl->metrics.CountGeneration(r->completion_tokens, std::chrono::duration<double>(Clock::now() - t0).count());
      impl->ids.Put(header.id, {r->response_id, request.user});
    }
    ticket.reset();  // frees the slot before the last bytes go out
    return r;
  }
};

bool WriteEvent(httplib::DataSink& sink, const json& j) {
  std::string line = "data: " + j.dump() + "\n\n";
  return sink.write(line.data(), line.size());
}

void Stream(std::shared_ptr<ChatJob> job, httplib::DataSink& sink) {
  const ReplyHeader& h = job->header;
  bool open = WriteEvent(sink, ChunkJson(h, {{"role", "assistant"}, {"content", ""}}, nullptr));
  auto r = job->Run([&](std::string_view piece) {
    open = open && WriteEvent(sink, ChunkJson(h, {{"content", std::string(piece)}}, nullptr));
    return open;  // a client that went away cancels its generation
  });
  if (!open) return;
  if (!r.ok()) {
    WriteEvent(sink, ErrorFromStatus(r.status()).ToJson());
  } else {
    WriteEvent(sink, ChunkJson(h, json::object(), OpenAiFinishReason(r->finish_reason)));
    if (job->request.include_usage) WriteEvent(sink, UsageChunkJson(h, {r->prompt_tokens, r->completion_tokens, r->cached_prompt_tokens}));
  }
  static const std::string kDone = "data: [DONE]\n\n";
  if (sink.write(kDone.data(), kDone.size())) sink.done();
}

void HandleChat(Server::Impl* impl, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (!ParseBody(req, res, &body, /*allow_empty=*/false)) return;
  auto job = std::make_shared<ChatJob>();
  job->impl = impl;
  const auto& c = impl->config;
  RequestLimits limits{c.server.max_messages, c.server.max_tokens_limit, c.model.default_max_tokens};
  if (auto e = ParseChatRequest(body, limits, &job->request)) return SendError(res, *e);
  auto pinned = impl->assistant->Pin(job->request.adapter);
  if (!pinned.ok()) {
    ApiError e = ErrorFromStatus(pinned.status(), "model");
    if (e.status == 404) e.code = "model_not_found";
    return SendError(res, e);
  }
  job->pinned = std::move(*pinned);
  job->ticket = impl->traffic->Enter();
  if (!job->ticket) {
    ApiError e;
    e.status = 503;
    e.type = "server_busy";
    e.code = "queue_full";
    e.message = "the request queue is full (server.max_queue); retry later";
    res.set_header("Retry-After", std::to_string(c.server.retry_after_seconds));
    return SendError(res, e);
  }
  job->header = {NewCompletionId(), job->request.model, "attune:" + job->pinned.label, job->pinned.version,
                 int64_t(std::time(nullptr))};
  if (job->request.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [job](size_t, httplib::DataSink& sink) {
      Stream(job, sink);
      return true;
    });
    return;
  }
  auto r = job->Run(nullptr);
  if (!r.ok()) return SendError(res, ErrorFromStatus(r.status()));
  SendJson(res, 200,
           CompletionJson(job->header, r->text, OpenAiFinishReason(r->finish_reason),
                          {r->prompt_tokens, r->completion_tokens, r->cached_prompt_tokens}));
}

json ModelEntry(const std::string& id, int64_t created) {
  return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "attune"}};
}

void HandleModels(Server::Impl* impl, httplib::Response& res) {
  const int64_t now = int64_t(std::time(nullptr));
  json data = json::array({ModelEntry("attune", now), ModelEntry("attune:base", now)});
  for (const auto& v : impl->assistant->registry().List()) {
    data.push_back(ModelEntry("attune:" + v.label(), v.added_unix_ms / 1000));
  }
  SendJson(res, 200, {{"object", "list"}, {"data", data}});
}

}  // namespace

void Server::Impl::ChatRoutes() {
  http.Post("/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { HandleChat(this, req, res); });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { HandleModels(this, res); });
}

}  // namespace attune::service
