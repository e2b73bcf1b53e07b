// serve_load: N concurrent streaming chat clients against an OpenAI-compatible
// server on loopback for a bounded time. Measures requests/s, time to first
// token (TTFT) and inter-token latency (ITL, between streamed content
// chunks), counts failed requests, and checks that every stream reports one
// system_fingerprint. Prints one JSON object.
//
// With --turns N each client holds conversations of N turns, resending the
// whole history every turn as chat clients do, and TTFT is also reported
// per turn with the prompt tokens the server says it restored from its
// prompt cache (usage.prompt_tokens_details.cached_tokens).
//
//   serve_load --port 8080 --clients 4 --seconds 20 --max-tokens 32 [--model attune] [--turns 1]
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Flags {
  int port = 8080, clients = 4, max_tokens = 32, turns = 1;
  double seconds = 20, think_ms = 0;
  std::string model = "attune", prompt = "Write one sentence about the sea.";
};

struct Totals {
  std::mutex mu;
  std::vector<double> ttft_ms, itl_ms;
  int ok = 0, failed = 0, mixed = 0;
  int64_t chunks = 0;
  std::set<std::string> fingerprints;
  std::vector<std::string> errors;
  // --turns: per turn index, TTFTs and the prompt / cached prompt tokens.
  std::vector<std::vector<double>> ttft_by_turn, prompt_by_turn, cached_by_turn;
};

const char* const kFollowUps[] = {"Tell me more.", "Why is that?", "Give me an example.", "And what else?",
                                  "Can you say it differently?", "What would you add?"};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One streaming request of `messages` (turn index `turn`); appends its
// measurements to `t` and returns the reply's text ("" on failure).
std::string OneRequest(const Flags& f, httplib::Client& c, Totals& t, const json& messages, int turn) {
  json body = {{"model", f.model},
               {"messages", messages},
               {"max_tokens", f.max_tokens},
               {"temperature", 0},
               {"stream", true}};
  if (f.turns > 1) body["stream_options"] = {{"include_usage", true}};
  std::string buffer, text;
  double prompt_tokens = -1, cached_tokens = -1;
  std::vector<double> itl;
  std::set<std::string> fps;
  double ttft = -1;
  bool done = false;
  const auto start = Clock::now();
  auto last = start;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = body.dump();
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buffer.append(data, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      json j = json::parse(payload, nullptr, false);
      if (!j.is_discarded() && j.contains("usage") && j["usage"].is_object()) {
        const json& u = j["usage"];
        if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number()) prompt_tokens = u["prompt_tokens"];
        if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object() &&
            u["prompt_tokens_details"].contains("cached_tokens") && u["prompt_tokens_details"]["cached_tokens"].is_number()) {
          cached_tokens = u["prompt_tokens_details"]["cached_tokens"];
        }
      }
      if (j.is_discarded() || !j.contains("choices") || j["choices"].empty()) continue;
      if (j.contains("system_fingerprint") && j["system_fingerprint"].is_string()) fps.insert(j["system_fingerprint"]);
      const json& delta = j["choices"][0]["delta"];
      if (!delta.contains("content") || !delta["content"].is_string() || delta["content"].get<std::string>().empty()) {
        continue;
      }
      text += delta["content"].get<std::string>();
      const auto now = Clock::now();
      if (ttft < 0) {
        ttft = Ms(now - start);
      } else {
        itl.push_back(Ms(now - last));
      }
      last = now;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool sent = c.send(req, res, error);
  std::lock_guard<std::mutex> l(t.mu);
  if (!sent || res.status != 200 || !done || ttft < 0) {
    t.failed++;
    if (t.errors.size() < 5) {
      t.errors.push_back(sent ? "status " + std::to_string(res.status) + " " + res.body.substr(0, 200)
                              : "transport error " + httplib::to_string(error));
    }
    return "";
  }
  t.ok++;
  t.ttft_ms.push_back(ttft);
  if (f.turns > 1) {
    if (t.ttft_by_turn.size() < size_t(f.turns)) {
      t.ttft_by_turn.resize(size_t(f.turns));
      t.prompt_by_turn.resize(size_t(f.turns));
      t.cached_by_turn.resize(size_t(f.turns));
    }
    t.ttft_by_turn[size_t(turn)].push_back(ttft);
    if (prompt_tokens >= 0) t.prompt_by_turn[size_t(turn)].push_back(prompt_tokens);
    if (cached_tokens >= 0) t.cached_by_turn[size_t(turn)].push_back(cached_tokens);
  }
  t.itl_ms.insert(t.itl_ms.end(), itl.begin(), itl.end());
  t.chunks += int64_t(itl.size()) + 1;
  if (fps.size() > 1) t.mixed++;
  t.fingerprints.insert(fps.begin(), fps.end());
  return text;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"serve_load: concurrent streaming chat clients against an OpenAI-compatible server"};
  app.add_option("--port", f.port, "Server port on 127.0.0.1");
  app.add_option("--clients", f.clients, "Concurrent clients");
  app.add_option("--seconds", f.seconds, "Duration; requests started before the end are finished");
  app.add_option("--max-tokens", f.max_tokens, "max_tokens per request");
  app.add_option("--think-ms", f.think_ms, "Pause of each client between its requests");
  app.add_option("--model", f.model, "model field of the requests");
  app.add_option("--prompt", f.prompt, "The user message (the first of each conversation)");
  app.add_option("--turns", f.turns, "Turns per conversation; each resends the whole history")->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);

  Totals t;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(f.seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < f.clients; ++i) {
    threads.emplace_back([&] {
      httplib::Client c("127.0.0.1", f.port);
      c.set_read_timeout(300, 0);
      json messages = json::array();
      int turn = 0;
      while (Clock::now() < end) {
        if (turn == 0) messages = json::array({{{"role", "user"}, {"content", f.prompt}}});
        std::string reply = OneRequest(f, c, t, messages, turn);
        if (++turn >= f.turns || reply.empty()) {
          turn = 0;
        } else {
          messages.push_back({{"role", "assistant"}, {"content", reply}});
          messages.push_back({{"role", "user"}, {"content", kFollowUps[(turn - 1) % 6]}});
        }
        if (f.think_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(f.think_ms));
      }
    });
  }
  for (auto& th : threads) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  json out = {{"clients", f.clients},
              {"seconds", wall},
              {"requests_ok", t.ok},
              {"requests_failed", t.failed},
              {"requests_per_second", t.ok / wall},
              {"stream_chunks_per_second", double(t.chunks) / wall},
              {"ttft_ms_p50", Percentile(t.ttft_ms, 0.5)},
              {"ttft_ms_p99", Percentile(t.ttft_ms, 0.99)},
              {"itl_ms_p50", Percentile(t.itl_ms, 0.5)},
              {"itl_ms_p99", Percentile(t.itl_ms, 0.99)},
              {"streams_with_mixed_versions", t.mixed},
              {"fingerprints", t.fingerprints},
              {"errors", t.errors}};
  if (f.turns > 1) {
    json by_turn = json::array();
    for (size_t i = 0; i < t.ttft_by_turn.size(); ++i) {
      by_turn.push_back({{"turn", i + 1},
                         {"requests", t.ttft_by_turn[i].size()},
                         {"ttft_ms_p50", Percentile(t.ttft_by_turn[i], 0.5)},
                         {"prompt_tokens_mean", Mean(t.prompt_by_turn[i])},
                         {"cached_tokens_mean", Mean(t.cached_by_turn[i])}});
    }
    out["turns"] = f.turns;
    out["by_turn"] = by_turn;
  }
  std::cout << out.dump() << std::endl;
  return t.failed == 0 ? 0 : 1;
}
