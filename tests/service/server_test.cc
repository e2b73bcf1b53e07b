// `attune serve` as a real process on loopback, driven by a real HTTP client
// (cpp-httplib): the OpenAI chat API, Attune's endpoints, errors, auth,
// back-pressure and graceful shutdown, on the tiny model.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "tests/service/server_process.h"

namespace attune::service::testing {
namespace {

using nlohmann::json;

json Body(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }

httplib::Result Post(httplib::Client& c, const std::string& path, const json& body) {
  return c.Post(path.c_str(), body.dump(), "application/json");
}

json Chat(const std::string& model, const std::string& text, int max_tokens = 8) {
  return {{"model", model},
          {"messages", json::array({{{"role", "user"}, {"content", text}}})},
          {"temperature", 0},
          {"max_tokens", max_tokens}};
}

json Demo(const std::string& id, const std::string& user, const std::string& q, const std::string& a) {
  return {{"id", id},
          {"user_id", user},
          {"context", json::array({{{"role", "user"}, {"content", q}}})},
          {"demonstration", {{"text", a}}}};
}

// The "data:" payloads of an SSE body, in order.
std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

// Polls `done` every 10 ms for up to `seconds`.
template <typename F>
bool PollFor(double seconds, F done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server.Start(dir.path, TinyConfig())) << server.Stderr(); }
  TempDir dir;
  ServerProcess server;
};

TEST_F(ServeTest, ChatCompletionCarriesIdUsageAndTheServingVersion) {
  auto c = server.Client();
  auto r = Post(c, "/v1/chat/completions", Chat("attune", "hi"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = Body(r);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["system_fingerprint"], "attune:base");  // nothing trained yet
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(j["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(j["usage"]["completion_tokens"].get<int>(), 8);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  std::vector<std::string> ids;
  const json models = Body(m);
  for (const auto& d : models["data"]) ids.push_back(d["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{"attune", "attune:base"}));
}

TEST_F(ServeTest, StreamSendsOneVersionThenFinishUsageAndDone) {
  auto c = server.Client();
  json req = Chat("attune", "hi", 20);
  auto plain = Post(c, "/v1/chat/completions", req);
  ASSERT_TRUE(plain && plain->status == 200);
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto r = Post(c, "/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  auto data = SseData(r->body);
  ASSERT_GE(data.size(), 4u) << r->body;
  EXPECT_EQ(data.back(), "[DONE]");
  json first = json::parse(data[0]);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    json chunk = json::parse(data[i]);
    EXPECT_EQ(chunk["id"], first["id"]);
    EXPECT_EQ(chunk["system_fingerprint"], "attune:base");
    if (!chunk["choices"].empty()) text += chunk["choices"][0]["delta"].value("content", "");
  }
  // Greedy decoding: the stream says exactly what the plain reply said.
  EXPECT_EQ(text, Body(plain)["choices"][0]["message"]["content"]);
  json finish = json::parse(data[data.size() - 3]);
  EXPECT_FALSE(finish["choices"][0]["finish_reason"].is_null());
  json usage = json::parse(data[data.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], Body(plain)["usage"]["completion_tokens"]);
}

TEST_F(ServeTest, BadRequestsGetOpenAiErrorsNamingTheField) {
  auto c = server.Client();
  auto expect = [&](const std::string& body, int status, const std::string& param) {
    auto r = c.Post("/v1/chat/completions", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    json e = Body(r)["error"];
    EXPECT_TRUE(e["message"].is_string()) << r->body;
    EXPECT_EQ(e["param"].is_null() ? "" : e["param"].get<std::string>(), param) << r->body;
  };
  json ok = Chat("attune", "hi");
  expect("{not json", 400, "body");
  expect(json{{"model", "attune"}}.dump(), 400, "messages");
  json t = ok;
  t["temperature"] = 3;
  expect(t.dump(), 400, "temperature");
  json n = ok;
  n["n"] = 2;
  expect(n.dump(), 400, "n");
  json tools = ok;
  tools["tools"] = json::array();
  expect(tools.dump(), 400, "tools");
  json role = ok;
  role["messages"][0]["role"] = "robot";
  expect(role.dump(), 400, "messages[0].role");
  json big = ok;
  big["max_tokens"] = 100000;
  expect(big.dump(), 400, "max_tokens");
  expect(Chat("gpt-4", "hi").dump(), 404, "model");
  expect(Chat("attune:v7", "hi").dump(), 404, "model");
  json huge = ok;
  huge["messages"][0]["content"] = std::string(2 << 20, 'a');
  expect(huge.dump(), 413, "body");
  auto unknown = c.Get("/v1/nothing-here");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_TRUE(Body(unknown)["error"]["message"].is_string());
}

TEST_F(ServeTest, FeedbackOnAResponseIdTrainsAndTheSwapIsSeenBetweenTwoRequests) {
  auto c = server.Client();
  auto before = Post(c, "/v1/chat/completions", Chat("attune", "my pet?"));
  ASSERT_TRUE(before && before->status == 200);
  const std::string rid = Body(before)["id"];
  auto fb = Post(c, "/v1/feedback", {{"response_id", rid}, {"correction", {{"text", "cat"}}}});
  ASSERT_TRUE(fb);
  ASSERT_EQ(fb->status, 200) << fb->body;
  EXPECT_EQ(Body(fb)["id"], "fb-" + rid);
  auto unknown = Post(c, "/v1/feedback", {{"response_id", "chatcmpl-nope"}, {"rating", {{"thumb", "UP"}}}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  for (int i = 0; i < 5; ++i) {
    auto d = Post(c, "/v1/feedback", Demo("d" + std::to_string(i), "u", "my pet?", "cat"));
    ASSERT_TRUE(d && d->status == 200) << (d ? d->body : "");
  }
  auto train = c.Post("/v1/train", "", "application/json");
  ASSERT_TRUE(train);
  ASSERT_EQ(train->status, 200) << train->body;
  ASSERT_TRUE(Body(train)["promoted"].get<bool>()) << train->body;
  EXPECT_EQ(Body(train)["label"], "v1");

  auto after = Post(c, "/v1/chat/completions", Chat("attune", "my pet?"));
  ASSERT_TRUE(after && after->status == 200);
  EXPECT_EQ(Body(before)["system_fingerprint"], "attune:base");
  EXPECT_EQ(Body(after)["system_fingerprint"], "attune:v1");
  EXPECT_NE(Body(after)["choices"][0]["message"]["content"].get<std::string>().find("cat"), std::string::npos);
  auto base = Post(c, "/v1/chat/completions", Chat("attune:base", "my pet?"));
  EXPECT_EQ(Body(base)["system_fingerprint"], "attune:base");
  EXPECT_EQ(Body(base)["choices"][0]["message"]["content"], Body(before)["choices"][0]["message"]["content"]);
  // The prompt cache: what the base model computed for "my pet?" serves the
  // base model again, never the adapter that was swapped in.
  EXPECT_EQ(Body(before)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(Body(after)["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << "v1 was served the base's cache";
  EXPECT_GT(Body(base)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);

  auto models = Body(c.Get("/v1/models"));
  EXPECT_EQ(models["data"].back()["id"], "attune:v1");
  auto list = Body(c.Get("/v1/adapters"));
  EXPECT_EQ(list["active_label"], "v1");
  ASSERT_EQ(list["versions"].size(), 1u);

  auto rb = c.Post("/v1/adapters/rollback", "", "application/json");
  ASSERT_TRUE(rb);
  EXPECT_EQ(rb->status, 200) << rb->body;
  EXPECT_EQ(Body(Post(c, "/v1/chat/completions", Chat("attune", "x")))["system_fingerprint"], "attune:base");
  auto promote = c.Post("/v1/adapters/v1/promote", R"({"force": true})", "application/json");
  ASSERT_TRUE(promote);
  EXPECT_EQ(promote->status, 200) << promote->body;
  EXPECT_EQ(Body(Post(c, "/v1/chat/completions", Chat("attune", "x")))["system_fingerprint"], "attune:v1");
  auto missing = c.Post("/v1/adapters/v9/promote", "", "application/json");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  json status = Body(c.Get("/v1/status"));
  EXPECT_EQ(status["active_label"], "v1");
  EXPECT_TRUE(status["last_run"]["promoted"].get<bool>());
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("attune_promotions_total 2"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("attune_rollbacks_total 1"), std::string::npos);
  EXPECT_NE(metrics->body.find("attune_training_steps_total 30"), std::string::npos);
}

TEST_F(ServeTest, ASecondTurnRestoresTheFirstFromThePromptCache) {
  auto c = server.Client();
  json first = Chat("attune", "Tell me about the weather in Lisbon in spring.");
  auto r1 = Post(c, "/v1/chat/completions", first);
  ASSERT_TRUE(r1 && r1->status == 200);
  EXPECT_EQ(Body(r1)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  json second = first;
  second["messages"].push_back({{"role", "assistant"}, {"content", Body(r1)["choices"][0]["message"]["content"]}});
  second["messages"].push_back({{"role", "user"}, {"content", "And in autumn?"}});
  auto r2 = Post(c, "/v1/chat/completions", second);
  ASSERT_TRUE(r2 && r2->status == 200) << (r2 ? r2->body : "");
  const int cached = Body(r2)["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GE(cached, Body(r1)["usage"]["prompt_tokens"].get<int>());
  EXPECT_LT(cached, Body(r2)["usage"]["prompt_tokens"].get<int>());
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("attune_prompt_cache_hits_total 1\n"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("attune_prompt_cache_reused_tokens_total " + std::to_string(cached) + "\n"),
            std::string::npos);
}

TEST_F(ServeTest, ForgetErasesOneUsersEvents) {
  auto c = server.Client();
  ASSERT_EQ(Post(c, "/v1/feedback", Demo("a1", "u-9", "q?", "a"))->status, 200);
  ASSERT_EQ(Post(c, "/v1/feedback", Demo("a2", "u-9", "q?", "b"))->status, 200);
  ASSERT_EQ(Post(c, "/v1/feedback", Demo("a3", "u-8", "q?", "c"))->status, 200);
  auto del = c.Delete("/v1/users/u-9");
  ASSERT_TRUE(del);
  ASSERT_EQ(del->status, 200) << del->body;
  EXPECT_EQ(Body(del)["events_erased"], 2);
  EXPECT_EQ(Body(c.Get("/v1/status"))["feedback"]["stored_events"], 1);
  EXPECT_EQ(Body(c.Delete("/v1/users/u-9"))["events_erased"], 0);
}

TEST_F(ServeTest, TrainingPausesWhileRequestsAreInFlight) {
  auto c = server.Client();
  for (int i = 0; i < 6; ++i) ASSERT_EQ(Post(c, "/v1/feedback", Demo("d" + std::to_string(i), "u", "q?", "a"))->status, 200);
  int train_status = 0;
  json train;
  std::atomic<bool> trained{false};
  std::thread trainer([&] {
    auto tc = server.Client();
    auto r = tc.Post("/v1/train", "", "application/json");
    train_status = r ? r->status : -1;
    train = Body(r);
    trained = true;
  });
  const bool running = PollFor(30, [&] { return Body(c.Get("/v1/status"))["training"]["running"].get<bool>(); });
  if (!running) trainer.detach();
  ASSERT_TRUE(running);
  // Requests, one after another, for as long as the window runs: it pauses
  // for them, then resumes. (A fixed number of requests could all finish
  // between two steps when replies are fast, e.g. from the prompt cache.)
  for (int i = 0; i < 10 || (!trained && i < 500); ++i) {
    ASSERT_EQ(Post(c, "/v1/chat/completions", Chat("attune", "hi " + std::to_string(i), 30))->status, 200);
  }
  trainer.join();
  ASSERT_EQ(train_status, 200) << train.dump();
  EXPECT_TRUE(train["completed"].get<bool>());
  EXPECT_GT(Body(c.Get("/v1/status"))["training"]["pauses"].get<int>(), 0);
}

TEST_F(ServeTest, SigtermLetsAnOpenStreamFinishAndExitsZero) {
  std::atomic<bool> first_chunk{false};
  std::string body;
  std::thread client([&] {
    auto c = server.Client();
    json req = Chat("attune", "hi", 150);
    req["stream"] = true;
    httplib::Request r;
    r.method = "POST";
    r.path = "/v1/chat/completions";
    r.headers = {{"Content-Type", "application/json"}};
    r.body = req.dump();
    r.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      body.append(data, n);
      first_chunk.store(true);
      return true;
    };
    httplib::Response res;
    httplib::Error error;
    c.send(r, res, error);
  });
  PollFor(30, [&] { return first_chunk.load(); });
  server.Signal(SIGTERM);
  client.join();
  EXPECT_EQ(server.Wait(), 0) << server.Stderr();
  auto data = SseData(body);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]");
  EXPECT_NE(server.Stderr().find("stopped"), std::string::npos);
}

TEST(ServeShutdownTest, SigtermDuringATrainingWindowStopsItWithACheckpoint) {
  TempDir dir;
  ServerProcess server;
  // A window far longer than the test: only a stop ends it.
  ASSERT_TRUE(server.Start(dir.path, TinyConfig("", "max_steps = 1000000"))) << server.Stderr();
  auto c = server.Client();
  for (int i = 0; i < 6; ++i) ASSERT_EQ(Post(c, "/v1/feedback", Demo("d" + std::to_string(i), "u", "q?", "a"))->status, 200);
  std::thread trainer([&] {
    auto tc = server.Client();
    tc.Post("/v1/train", "", "application/json");
  });
  const bool stepping = PollFor(30, [&] { return Body(c.Get("/v1/status"))["training"]["step"].get<int>() > 0; });
  if (!stepping) trainer.detach();  // the process is killed at the end of the test
  ASSERT_TRUE(stepping);
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitFor(60), 0) << server.Stderr();
  trainer.join();
  EXPECT_TRUE(std::filesystem::exists(dir.path + "/data/checkpoints/train.ck"));
}

// The bug: the thread that turns SIGTERM into Stop() kept calling Stop()
// while the server was being destroyed; about one stop in 30 ended in SIGSEGV
// (exit 139) instead of 0. Each round here is one such stop.
TEST(ServeShutdownTest, SigtermStopNeverTouchesTheServerWhileItIsDestroyed) {
  for (int round = 0; round < 10; ++round) {
    TempDir dir;
    ServerProcess server;
    ASSERT_TRUE(server.Start(dir.path, TinyConfig())) << server.Stderr();
    auto c = server.Client();
    ASSERT_EQ(Post(c, "/v1/chat/completions", Chat("attune", "hi"))->status, 200);
    server.Signal(SIGTERM);
    ASSERT_EQ(server.WaitFor(60), 0) << "round " << round << "\n" << server.Stderr();
  }
}

TEST(ServeLimitsTest, AFullQueueAnswers503WithRetryAfter) {
  TempDir dir;
  ServerProcess server;
  ASSERT_TRUE(server.Start(dir.path, TinyConfig("max_concurrent = 1\nmax_queue = 0\nretry_after_seconds = 3")))
      << server.Stderr();
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&] {
      auto c = server.Client();
      auto r = Post(c, "/v1/chat/completions", Chat("attune", "hi", 150));
      if (r && r->status == 200) {
        ok++;
      } else if (r && r->status == 503 && r->get_header_value("Retry-After") == "3" &&
                 Body(r)["error"]["code"] == "queue_full") {
        busy++;
      } else {
        other++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(busy.load(), 1);
  EXPECT_EQ(other.load(), 0);
}

TEST(ServeAuthTest, ABearerTokenIsRequiredWhenAKeyFileIsGiven) {
  TempDir dir;
  const std::string key_file = dir.path + "/key";
  std::ofstream(key_file) << "0123456789abcdef-secret\n";
  chmod(key_file.c_str(), 0600);
  ServerProcess server;
  ASSERT_TRUE(server.Start(dir.path, TinyConfig(), {"--api-key-file", key_file})) << server.Stderr();
  auto c = server.Client();
  auto none = Post(c, "/v1/chat/completions", Chat("attune", "hi"));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(Body(none)["error"]["code"], "invalid_api_key");
  c.set_bearer_token_auth("wrong-token-wrong-token");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("0123456789abcdef-secret");
  EXPECT_EQ(Post(c, "/v1/chat/completions", Chat("attune", "hi"))->status, 200);
  EXPECT_EQ(server.Client().Get("/healthz")->status, 200);  // health needs no key
}

TEST(ServeAuthTest, RefusesAKeyFileOthersCanRead) {
  TempDir dir;
  const std::string key_file = dir.path + "/key";
  std::ofstream(key_file) << "0123456789abcdef-secret\n";
  chmod(key_file.c_str(), 0644);
  ServerProcess server;
  EXPECT_FALSE(server.Start(dir.path, TinyConfig(), {"--api-key-file", key_file}));
  EXPECT_EQ(server.Wait(), 1);
  EXPECT_NE(server.Stderr().find("chmod 600"), std::string::npos) << server.Stderr();
}

TEST(ServeAuthTest, RefusesANonLoopbackHostWithoutAKey) {
  TempDir dir;
  ServerProcess server;
  EXPECT_FALSE(server.Start(dir.path, TinyConfig(), {"--host", "0.0.0.0"}));
  EXPECT_EQ(server.Wait(), 1);
  EXPECT_NE(server.Stderr().find("API key is required"), std::string::npos) << server.Stderr();
}

// curl over a Unix socket: the HTTP status line's code and the body.
std::pair<int, std::string> CurlUnix(const std::string& socket, const std::string& path, const std::string& body = "") {
  std::string cmd = "curl -s -m 120 -w '\\n%{http_code}' --unix-socket '" + socket + "' ";
  if (!body.empty()) cmd += "-H 'Content-Type: application/json' -d '" + body + "' ";
  cmd += "http://localhost" + path;
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return {0, out};
  return {std::atoi(out.c_str() + nl + 1), out.substr(0, nl)};
}

TEST(ServeSocketTest, ServesOverAUnixSocketOnlyItsOwnerMayUseAndRemovesItAtExit) {
  TempDir dir;
  const std::string sock = dir.path + "/attune.sock";
  ServerProcess server;
  ASSERT_TRUE(server.Start(dir.path, TinyConfig(), {"--socket", sock})) << server.Stderr();
  struct stat st {};
  ASSERT_EQ(lstat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(CurlUnix(sock, "/healthz").first, 200);
  auto [code, body] = CurlUnix(sock, "/v1/chat/completions", Chat("attune", "hi").dump());
  EXPECT_EQ(code, 200) << body;
  json j = json::parse(body, nullptr, false);
  EXPECT_EQ(j.value("system_fingerprint", ""), "attune:base") << body;
  EXPECT_EQ(CurlUnix(sock, "/v1/nope").first, 404);
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(), 0) << server.Stderr();
  EXPECT_NE(lstat(sock.c_str(), &st), 0) << "the socket file outlived the service";
}

TEST(ServeSocketTest, ASocketInUseIsRefusedAStaleOneReplacedAndAnyOtherFileKept) {
  TempDir dir;
  const std::string sock = dir.path + "/attune.sock";
  {
    ServerProcess first;
    ASSERT_TRUE(first.Start(dir.path, TinyConfig(), {"--socket", sock})) << first.Stderr();
    TempDir dir2;
    ServerProcess second;
    EXPECT_FALSE(second.Start(dir2.path, TinyConfig(), {"--socket", sock}));
    EXPECT_EQ(second.Wait(), 1);
    EXPECT_NE(second.Stderr().find("another process is listening on " + sock), std::string::npos) << second.Stderr();
    EXPECT_EQ(CurlUnix(sock, "/healthz").first, 200) << "the refused second service broke the first";
    first.Signal(SIGKILL);
    first.Wait();
  }
  struct stat st {};
  ASSERT_EQ(lstat(sock.c_str(), &st), 0) << "a killed service leaves its socket file";
  {
    ServerProcess restarted;
    ASSERT_TRUE(restarted.Start(dir.path, TinyConfig(), {"--socket", sock})) << restarted.Stderr();
    EXPECT_EQ(CurlUnix(sock, "/healthz").first, 200);
  }
  const std::string file = dir.path + "/notes.txt";
  std::ofstream(file) << "keep me";
  ServerProcess server;
  EXPECT_FALSE(server.Start(dir.path, TinyConfig(), {"--socket", file}));
  EXPECT_EQ(server.Wait(), 1);
  EXPECT_NE(server.Stderr().find("is not a socket"), std::string::npos) << server.Stderr();
  std::ifstream in(file);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "keep me");
}

TEST(ServeConfigTest, AnUnknownKeyIsAnErrorNamingIt) {
  TempDir dir;
  ServerProcess server;
  EXPECT_FALSE(server.Start(dir.path, TinyConfig("colour = \"blue\"")));
  EXPECT_EQ(server.Wait(), 1);
  EXPECT_NE(server.Stderr().find("unknown key 'server.colour'"), std::string::npos) << server.Stderr();
}

TEST(ServeConfigTest, StatusSaysWhenTheScheduleKeepsTheWindowClosed) {
  // A one-hour schedule starting two hours from now never includes now.
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char sched[32];
  std::snprintf(sched, sizeof(sched), "%02d:00-%02d:00", (local.tm_hour + 2) % 24, (local.tm_hour + 3) % 24);
  TempDir dir;
  ServerProcess server;
  ASSERT_TRUE(server.Start(dir.path, TinyConfig("", std::string("schedule = \"") + sched + "\""))) << server.Stderr();
  json status = Body(server.Client().Get("/v1/status"));
  EXPECT_FALSE(status["window"]["open"].get<bool>());
  EXPECT_EQ(status["schedule"], sched);
  bool named = false;
  for (const auto& why : status["window"]["closed_because"]) {
    named = named || why.get<std::string>().find(std::string("outside the schedule ") + sched) != std::string::npos;
  }
  EXPECT_TRUE(named) << status.dump();
}

}  // namespace
}  // namespace attune::service::testing
