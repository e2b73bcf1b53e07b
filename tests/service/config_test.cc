// Unit tests of the service's own logic: config validation, the schedule,
// the bounded queue, and OpenAI request parsing.
#include <gtest/gtest.h>

#include <thread>

#include "attune/service/config.h"
#include "attune/service/schedule.h"
#include "service/src/openai.h"
#include "service/src/traffic.h"

namespace attune::service {
namespace {

using nlohmann::json;

TEST(ServiceConfigTest, ReadsEveryDocumentedSection) {
  auto c = ParseServiceConfig(R"(
[server]
port = 9000
max_queue = 3
[model]
default_max_tokens = 64
[training]
schedule = "01:00-06:00"
quiet_seconds = 5.5
unknown = "deny"
max_steps = 12
max_minutes = 2.5
[trainer]
rank = 8
learning_rate = 0.002
max_seq_len = 96
replay_eval_examples = 64
forgetting_prompts = ["a", "b"]
anchor_prompts = ["river?", "apple"]
base_products = "fp32"
threads = 1
null_space_energy = 0.97
contrast_anchors = 16
anchor_margin_boost = 4
scope = true
question_dropout_copies = 2
question_dropout_p = 0.25
question_dropout_weight = 1.5
question_dropout_min_words = 4
[gate]
max_forgetting_kl = 0.5
replay_loss_floor = 0.001
)",
                              "serve.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.port, 9000);
  EXPECT_EQ(c->server.max_queue, 3);
  EXPECT_EQ(c->model.default_max_tokens, 64);
  EXPECT_EQ(c->training.schedule, "01:00-06:00");
  EXPECT_DOUBLE_EQ(c->training.quiet_seconds, 5.5);
  EXPECT_EQ(c->trainer.lora.rank, 8);
  EXPECT_DOUBLE_EQ(c->trainer.adamw.lr, 0.002);
  EXPECT_EQ(c->trainer.encode.max_seq_len, 96);
  EXPECT_EQ(c->trainer.replay_eval_examples, 64);
  // [training]'s step budget is the trainer's, and every key left out keeps
  // the trainer's own default.
  EXPECT_EQ(c->trainer.max_steps, 12);
  EXPECT_DOUBLE_EQ(c->trainer.max_minutes, 2.5);
  const trainer::TrainerOptions defaults;
  EXPECT_DOUBLE_EQ(c->trainer.lora.alpha, defaults.lora.alpha);
  EXPECT_EQ(c->trainer.grad_accum_steps, defaults.grad_accum_steps);
  EXPECT_EQ(c->trainer.anchor_examples, defaults.anchor_examples);
  EXPECT_EQ(c->trainer.forgetting_prompts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c->trainer.anchor_prompts, (std::vector<std::string>{"river?", "apple"}));
  EXPECT_EQ(c->trainer.base_products, "fp32");
  EXPECT_EQ(c->trainer.threads, 1);
  EXPECT_DOUBLE_EQ(c->trainer.null_space_energy, 0.97);
  EXPECT_EQ(c->trainer.contrast_anchors, 16);
  EXPECT_DOUBLE_EQ(c->trainer.anchor_margin_boost, 4);
  EXPECT_TRUE(c->trainer.scope);
  EXPECT_EQ(c->trainer.question_dropout_copies, 2);
  EXPECT_DOUBLE_EQ(c->trainer.question_dropout_p, 0.25);
  EXPECT_DOUBLE_EQ(c->trainer.question_dropout_weight, 1.5);
  EXPECT_EQ(c->trainer.question_dropout_min_words, 4);
  EXPECT_DOUBLE_EQ(c->gate.max_forgetting_kl, 0.5);
  EXPECT_DOUBLE_EQ(c->gate.replay_loss_floor, 0.001);
}

TEST(ServiceConfigTest, NamesAnUnknownKeyAndSection) {
  auto k = ParseServiceConfig("[training]\nshedule = \"01:00-02:00\"\n", "serve.toml");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("serve.toml: unknown key 'training.shedule'"), std::string::npos)
      << k.status().message();
  auto s = ParseServiceConfig("[sever]\nport = 1\n", "serve.toml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("unknown section [sever]"), std::string::npos);
}

TEST(ServiceConfigTest, NamesAKeyWithTheWrongTypeOrRange) {
  auto t = ParseServiceConfig("[server]\nport = \"8080\"\n", "f.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("'server.port' must be an integer"), std::string::npos);
  auto r = ParseServiceConfig("[server]\nmax_concurrent = 0\n", "f.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("server.max_concurrent must be in 1..64"), std::string::npos);
  auto s = ParseServiceConfig("[training]\nschedule = \"1am-6am\"\n", "f.toml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("training.schedule"), std::string::npos);
  auto sock = ParseServiceConfig("[server]\nsocket = \"/" + std::string(120, 's') + "\"\n", "f.toml");
  ASSERT_FALSE(sock.ok());
  EXPECT_NE(sock.status().message().find("server.socket must be a path shorter than 108 bytes"), std::string::npos)
      << sock.status().message();
  auto bp = ParseServiceConfig("[trainer]\nbase_products = \"fp16\"\n", "f.toml");
  ASSERT_FALSE(bp.ok());
  EXPECT_NE(bp.status().message().find("trainer.base_products must be \"auto\", \"fp32\" or \"bf16\""), std::string::npos)
      << bp.status().message();
  auto th = ParseServiceConfig("[trainer]\nthreads = -1\n", "f.toml");
  ASSERT_FALSE(th.ok());
  EXPECT_NE(th.status().message().find("trainer.threads must be in 0..1024"), std::string::npos) << th.status().message();
  auto ns = ParseServiceConfig("[trainer]\nnull_space_energy = 1.0\n", "f.toml");
  ASSERT_FALSE(ns.ok());
  EXPECT_NE(ns.status().message().find("trainer.null_space_energy must be in [0, 1)"), std::string::npos)
      << ns.status().message();
  auto ca = ParseServiceConfig("[trainer]\ncontrast_anchors = -1\n", "f.toml");
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.status().message().find("trainer.contrast_anchors must be >= 0"), std::string::npos)
      << ca.status().message();
  for (const auto& [line, rule] : std::vector<std::pair<std::string, std::string>>{
           {"question_dropout_copies = 17", "trainer.question_dropout_copies must be in [0, 16]"},
           {"question_dropout_p = 1.0", "trainer.question_dropout_p must be in (0, 1)"},
           {"question_dropout_weight = 0.0", "trainer.question_dropout_weight must be a finite number > 0"},
           {"question_dropout_min_words = 2", "trainer.question_dropout_min_words must be in [3, 1000]"}}) {
    auto qd = ParseServiceConfig("[trainer]\n" + line + "\n", "f.toml");
    ASSERT_FALSE(qd.ok()) << line;
    EXPECT_NE(qd.status().message().find(rule), std::string::npos) << qd.status().message();
  }
  auto rf = ParseServiceConfig("[gate]\nreplay_loss_floor = -0.1\n", "f.toml");
  ASSERT_FALSE(rf.ok());
  EXPECT_NE(rf.status().message().find("gate.replay_loss_floor must be >= 0"), std::string::npos)
      << rf.status().message();
  for (const char* m : {"-0.1", "1.0", "nan"}) {
    auto mi = ParseServiceConfig(std::string("[gate]\nmin_new_loss_improvement = ") + m + "\n", "f.toml");
    ASSERT_FALSE(mi.ok()) << m;
    EXPECT_NE(mi.status().message().find("gate.min_new_loss_improvement must be in [0, 1)"), std::string::npos)
        << mi.status().message();
  }
  // The trainer's own ranges (trainer::ValidateTrainerOptions), named by the
  // file's keys; [training]'s keys keep their section's name.
  for (const auto& [text, rule] : std::vector<std::pair<std::string, std::string>>{
           {"[trainer]\nrank = 2000\n", "trainer.rank must be in 1..1024, not 2000"},
           {"[trainer]\nlearning_rate = 1.5\n", "trainer.learning_rate must be in (0, 1), not 1.5"},
           {"[trainer]\nmax_seq_len = 4\n", "trainer.max_seq_len must be >= 8, not 4"},
           {"[trainer]\ndropout = 1.0\n", "trainer.dropout must be in [0, 1), not 1"},
           {"[trainer]\nthreads = 4294967296\n", "'trainer.threads' is out of range (4294967296)"},
           {"[training]\nmax_steps = 0\n", "training.max_steps must be >= 1"},
           {"[training]\nmax_minutes = -1.0\n", "training.max_minutes must be a finite number >= 0"}}) {
    auto t = ParseServiceConfig(text, "f.toml");
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.status().message().find(rule), std::string::npos) << t.status().message();
  }
  auto gm = ParseServiceConfig("[trainer]\ngraph_memory_mb = -1\n", "f.toml");
  ASSERT_FALSE(gm.ok());
  EXPECT_NE(gm.status().message().find("trainer.graph_memory_mb must be a finite number >= 0"), std::string::npos)
      << gm.status().message();
  auto bad = ParseServiceConfig("[server\n", "f.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("f.toml:1:"), std::string::npos) << bad.status().message();
}

TEST(ServiceConfigTest, ANonLoopbackHostNeedsAnApiKey) {
  ServiceConfig c;
  c.server.host = "0.0.0.0";
  EXPECT_FALSE(ValidateServiceConfig(c).ok());
  c.server.api_key_file = "/k";
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
  c.server.api_key_file = "";
  c.server.socket = "/run/user/1000/attune.sock";  // the host is not listened on then
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.3.2.1"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("192.168.1.2"));
  EXPECT_FALSE(IsLoopbackHost("example.org"));
}

TEST(ScheduleTest, AllowsItsIntervalAndWrapsPastMidnight) {
  auto day = Schedule::Parse("01:00-06:00");
  ASSERT_TRUE(day.ok());
  EXPECT_FALSE(day->Allows(59));
  EXPECT_TRUE(day->Allows(60));
  EXPECT_TRUE(day->Allows(359));
  EXPECT_FALSE(day->Allows(360));
  auto night = Schedule::Parse("22:30-06:00");
  ASSERT_TRUE(night.ok());
  EXPECT_TRUE(night->Allows(23 * 60));
  EXPECT_TRUE(night->Allows(0));
  EXPECT_FALSE(night->Allows(12 * 60));
  EXPECT_FALSE(night->Allows(22 * 60 + 29));
  EXPECT_TRUE(Schedule::Parse("")->any_time());
  for (const char* bad : {"1:00-06:00", "01:00-01:00", "24:00-01:00", "01:60-02:00", "01:00", "01:00-"}) {
    EXPECT_FALSE(Schedule::Parse(bad).ok()) << bad;
  }
}

TEST(TrafficTest, AdmitsConcurrentPlusQueuedThenRefuses) {
  Traffic t(/*max_concurrent=*/1, /*max_queue=*/1, /*quiet_seconds=*/0);
  auto a = t.Enter();
  auto b = t.Enter();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(t.Enter(), nullptr);
  a->WaitToRun();
  EXPECT_EQ(t.in_flight(), 1);
  EXPECT_EQ(t.queued(), 1);
  a.reset();
  b->WaitToRun();  // the freed slot
  EXPECT_NE(t.Enter(), nullptr);
}

TEST(TrafficTest, TrainingWaitsForRequestsToLeaveAndShutdownReleasesIt) {
  Traffic t(2, 2, /*quiet_seconds=*/0);
  EXPECT_FALSE(t.WaitForQuiet());  // nothing in flight: no pause
  auto a = t.Enter();
  std::atomic<bool> resumed{false};
  std::thread trainer([&] {
    EXPECT_TRUE(t.WaitForQuiet());
    resumed.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(resumed.load());
  a.reset();
  trainer.join();
  EXPECT_TRUE(resumed.load());
  EXPECT_EQ(t.pauses(), 1u);

  auto b = t.Enter();
  std::thread stuck([&] { t.WaitForQuiet(); });
  t.Shutdown();
  stuck.join();  // returns although a request is still in
}

TEST(ChatRequestTest, ReadsTheOpenAiFields) {
  json body = {{"model", "attune:v3"},
               {"messages", json::array({{{"role", "developer"}, {"content", "be brief"}},
                                         {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                                                    {{"type", "text"}, {"text", "b"}}})}}})},
               {"temperature", 0.5},
               {"top_p", 0.9},
               {"max_completion_tokens", 12},
               {"stop", {"x", "y"}},
               {"seed", 7},
               {"n", 1},
               {"user", "u-1"},
               {"presence_penalty", 0},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  ChatRequest r;
  auto e = ParseChatRequest(body, {}, &r);
  ASSERT_FALSE(e.has_value()) << e->message;
  EXPECT_EQ(r.adapter, "v3");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_FLOAT_EQ(r.generation.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.generation.sampling.top_p, 0.9f);
  EXPECT_EQ(r.generation.max_tokens, 12);
  EXPECT_EQ(r.generation.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(r.generation.sampling.seed, 7u);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.user, "u-1");
}

TEST(ChatRequestTest, ErrorsNameTheField) {
  auto param = [](json body) {
    ChatRequest r;
    auto e = ParseChatRequest(body, {}, &r);
    return e ? e->param + "/" + std::to_string(e->status) : std::string("ok");
  };
  json ok = {{"model", "attune"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  EXPECT_EQ(param(ok), "ok");
  auto with = [&](const std::string& k, json v) {
    json b = ok;
    b[k] = v;
    return b;
  };
  EXPECT_EQ(param(with("model", "gpt-4o")), "model/404");
  EXPECT_EQ(param(with("model", 3)), "model/400");
  EXPECT_EQ(param(with("top_p", 0)), "top_p/400");
  EXPECT_EQ(param(with("seed", "x")), "seed/400");
  EXPECT_EQ(param(with("stop", json::array({"a", "b", "c", "d", "e"}))), "stop/400");
  EXPECT_EQ(param(with("max_tokens", 0)), "max_tokens/400");
  EXPECT_EQ(param(with("stream_options", {{"include_usage", true}})), "stream_options/400");  // needs stream
  EXPECT_EQ(param(with("logit_bias", json::object({{"1", 2}}))), "logit_bias/400");
  EXPECT_EQ(param(with("frequency_penalty", 0.5)), "frequency_penalty/400");
  json img = ok;
  img["messages"][0]["content"] = json::array({{{"type", "image_url"}}});
  EXPECT_EQ(param(img), "messages[0].content[0].type/400");
  RequestLimits small;
  small.max_messages = 1;
  json two = ok;
  two["messages"].push_back(ok["messages"][0]);
  ChatRequest r;
  EXPECT_EQ(ParseChatRequest(two, small, &r)->param, "messages");
}

}  // namespace
}  // namespace attune::service
