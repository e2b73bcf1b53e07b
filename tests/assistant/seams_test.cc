// The assistant's seams between threads and restarts: the engine serves the
// registry's active version whatever the interleaving of publishers, a
// device-state change wakes the background trainer at once, shutdown does
// not wait for a poll interval, the health watch survives a restart, and
// forgetting a user takes back what adapters learned from them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "attune/assistant.h"
#include "attune/core/env.h"
#include "attune/core/file.h"
#include "attune/trainer/forget.h"
#include "tests/core/fault_env.h"
#include "tests/runtime/test_util.h"

namespace attune {
namespace {

using attune::testing::Fixture;
using Clock = std::chrono::steady_clock;

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    path = (std::filesystem::temp_directory_path() / ("attune_seams_" + std::to_string(::getpid()) + "_" + name)).string();
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

trainer::DeviceState Idle(bool idle) {
  trainer::DeviceState s;
  s.external_power = idle;
  s.battery_percent = 90;
  s.idle_minutes = idle ? 30 : 0;
  s.temperature_c = 30;
  return s;
}

AssistantOptions Options(const std::string& dir) {
  AssistantOptions o;
  o.data_dir = dir;
  o.model_path = Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";
  o.generation.max_tokens = 4;
  o.background_training = false;
  o.window.min_new_events = 4;
  o.window.min_idle_minutes = 5;
  auto& t = o.training.trainer;
  t.lora.rank = 4;
  t.lora.alpha = 8;
  t.max_steps = 4;
  t.micro_batch_size = 4;
  t.grad_accum_steps = 1;
  t.encode.max_seq_len = 48;
  t.anchor_examples = 0;
  t.forgetting_prompts = {"hi"};
  o.training.force = true;  // these tests need versions, not the gate's opinion
  o.health.window = 4;
  return o;
}

feedback::Event Demo(const std::string& id) {
  feedback::Event e;
  e.id = id;
  e.user_id = "u";
  e.context = {{feedback::Role::kUser, "my pet?"}};
  e.signal = feedback::Demonstration{"cat " + id};
  return e;
}

void AddDemos(Assistant& a, const std::string& prefix, int n) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(a.Record(Demo(prefix + std::to_string(i))).ok());
}

// The bug: SetDeviceState notified the condition variable, but the wait's
// predicate looked only at `stopping`, so the trainer slept on until the
// next poll (30 s by default).
TEST(AssistantSeamsTest, SetDeviceStateWakesTheBackgroundTrainerAtOnce) {
  TempDir dir("wake");
  AssistantOptions o = Options(dir.path);
  o.background_training = true;
  o.poll_interval = std::chrono::seconds(600);
  auto busy = std::make_shared<trainer::PushedDeviceStateSource>();
  busy->Set(Idle(false));
  o.device = busy;
  auto opened = Assistant::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  AddDemos(a, "d", 5);
  a.SetDeviceState(Idle(true));
  const auto t0 = Clock::now();
  bool started = false;
  while (!started && Clock::now() - t0 < std::chrono::seconds(20)) {
    auto s = a.GetStatus();
    started = s.training || s.last_run.has_value();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(started) << "the window opened but the trainer did not wake up";
  a.SetDeviceState(Idle(false));
}

TEST(AssistantSeamsTest, ShutdownDoesNotWaitForThePollInterval) {
  TempDir dir("shutdown");
  AssistantOptions o = Options(dir.path);
  o.background_training = true;
  o.poll_interval = std::chrono::seconds(600);
  for (int i = 0; i < 20; ++i) {
    auto a = Assistant::Open(o);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    const auto t0 = Clock::now();
    a->reset();
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  }
}

// The bug: publishing read the registry's active version, loaded it and set
// it without a lock, so a slow publish of one version could land after a
// newer activation had been published: the engine then served a version the
// registry no longer had as active. The load of v1 is held up (a read hook
// of the filesystem seam) until a rollback to v2 has been recorded.
TEST(AssistantSeamsTest, SlowPublishCannotLandAfterANewerRollback) {
  TempDir dir("publish");
  AssistantOptions o = Options(dir.path);
  auto opened = Assistant::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  AddDemos(a, "a", 4);
  auto v1 = a.TrainNow();
  ASSERT_TRUE(v1.ok() && v1->promoted) << (v1.ok() ? v1->gate_summary : v1.status().ToString());
  AddDemos(a, "b", 4);
  auto v2 = a.TrainNow();
  ASSERT_TRUE(v2.ok() && v2->promoted) << (v2.ok() ? v2->gate_summary : v2.status().ToString());

  // Calibration: how many times a promotion of v1 reads its payload (the
  // registry verifies it, then the publisher loads it: the last read).
  attune::testing::FaultInjectionEnv env;
  std::mutex mu;
  std::condition_variable cv;
  int reads = 0, block_at = -1;
  bool loading = false, release = false;
  env.SetReadHook([&](const std::string& path) {
    if (path.find(v1->version) == std::string::npos) return;
    std::unique_lock<std::mutex> l(mu);
    if (++reads != block_at) return;
    loading = true;
    cv.notify_all();
    cv.wait_for(l, std::chrono::seconds(30), [&] { return release; });
  });
  ScopedDefaultEnv scope(&env);
  ASSERT_TRUE(a.Promote(v1->version, /*force=*/true).ok());
  ASSERT_EQ(a.engine().adapter_version(), v1->version);
  ASSERT_TRUE(a.Rollback().ok());
  ASSERT_EQ(a.engine().adapter_version(), v2->version);
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_GT(reads, 0);
    block_at = 2 * reads;  // the publisher's load in the next promotion
  }

  std::thread promote([&] { EXPECT_TRUE(a.Promote(v1->version, /*force=*/true).ok()); });
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(30), [&] { return loading; }));
  }
  // v1 is active in the registry and its load is in flight: roll back.
  std::thread rollback([&] { EXPECT_TRUE(a.Rollback().ok()); });
  const auto t0 = Clock::now();
  while (a.GetStatus().active_version != v2->version && Clock::now() - t0 < std::chrono::seconds(30)) std::this_thread::yield();
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  promote.join();
  rollback.join();
  EXPECT_EQ(a.GetStatus().active_version, v2->version);
  EXPECT_EQ(a.engine().adapter_version(), v2->version) << "the engine serves a version the registry rolled back from";
}

// A chat reply held open mid-generation (its text callback blocks until the
// test releases it), so the test knows a reply is being generated.
class HeldReply {
 public:
  explicit HeldReply(Assistant& a) {
    thread_ = std::thread([this, &a] {
      auto r = a.Chat({{"user", "hi"}}, [this](std::string_view) {
        std::unique_lock<std::mutex> l(mu_);
        generating_ = true;
        cv_.notify_all();
        cv_.wait(l, [&] { return released_; });
        return true;
      });
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
      cv_.notify_all();
    });
  }
  ~HeldReply() {
    Release();
    thread_.join();
  }
  // True once the reply's first piece of text is out (false if the reply
  // ended without text, or after 30 s).
  bool WaitUntilGenerating() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(30), [&] { return generating_ || done_; });
    return generating_;
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool generating_ = false, released_ = false, done_ = false;
  std::thread thread_;
};

// A window trained by TrainNow on a thread of its own, its last step counted.
class WindowBeside {
 public:
  void Open(const std::string& dir, int max_steps) {
    AssistantOptions o = Options(dir);
    o.generation.stop_at_eos = false;  // a reply always has text
    o.training.trainer.max_steps = max_steps;
    o.on_progress = [this](const trainer::TrainProgress& p) { last_step_.store(p.step); };
    auto opened = Assistant::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    a_ = std::move(*opened);
    AddDemos(*a_, "d", 5);
  }
  Assistant& assistant() { return *a_; }
  int64_t last_step() const { return last_step_.load(); }
  void Start() {
    train_ = std::thread([this] { run_ = a_->TrainNow(); });
  }
  const Result<trainer::TrainingRunResult>& Join() {
    train_.join();
    return run_;
  }
  ~WindowBeside() {
    if (train_.joinable()) train_.join();
  }

 private:
  std::unique_ptr<Assistant> a_;
  std::atomic<int64_t> last_step_{0};
  Result<trainer::TrainingRunResult> run_ = InternalError("not run");
  std::thread train_;
};

// Serving comes first (AssistantOptions::serving_first). The bug: only the
// demo's own hook paused the window for its chat; an app's Chat during a
// window shared the cores with the training steps.
TEST(AssistantSeamsTest, AWindowDoesNotStartWhileAChatReplyIsBeingGenerated) {
  TempDir dir("serving_first_start");
  WindowBeside w;
  ASSERT_NO_FATAL_FAILURE(w.Open(dir.path, 4));
  HeldReply reply(w.assistant());
  ASSERT_TRUE(reply.WaitUntilGenerating()) << "the reply gave no text";
  w.Start();
  const auto t0 = Clock::now();
  while (!w.assistant().GetStatus().training && Clock::now() - t0 < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(w.assistant().GetStatus().training);
  // The whole 4-step window of the tiny model takes well under this.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(w.last_step(), 0) << "the window trained while a reply was being generated";
  reply.Release();
  const auto& run = w.Join();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->report.steps, 4);
}

TEST(AssistantSeamsTest, AWindowPausesBetweenMicroStepsWhileAChatReplyIsBeingGenerated) {
  TempDir dir("serving_first_pause");
  WindowBeside w;
  ASSERT_NO_FATAL_FAILURE(w.Open(dir.path, 100));
  w.Start();
  const auto t0 = Clock::now();
  while (w.last_step() == 0 && Clock::now() - t0 < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(w.last_step(), 0) << "the window did not start";
  int64_t at_reply = 0, a_second_later = 0;
  {
    HeldReply reply(w.assistant());
    ASSERT_TRUE(reply.WaitUntilGenerating()) << "the reply gave no text";
    at_reply = w.last_step();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    a_second_later = w.last_step();
  }
  // At most the step under way when the reply started finishes.
  EXPECT_LE(a_second_later - at_reply, 1) << "the window kept training while a reply was being generated";
  const auto& run = w.Join();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->report.steps, 100) << "the window did not go on after the reply";
}

// A window run from inside a reply's own text callback does not wait for
// that reply (it would wait forever). It returns an error: the reply's
// generation runs without autograd on that thread (docs/assistant.md).
TEST(AssistantSeamsTest, AWindowRunFromAReplysTextCallbackDoesNotWaitForIt) {
  TempDir dir("serving_first_inside");
  WindowBeside w;
  ASSERT_NO_FATAL_FAILURE(w.Open(dir.path, 4));
  Assistant& a = w.assistant();
  std::optional<Result<trainer::TrainingRunResult>> run;
  auto reply = a.Chat({{"user", "hi"}}, [&](std::string_view) {
    if (!run) run = a.TrainNow();
    return true;
  });
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_TRUE(run.has_value()) << "the reply gave no text";
  EXPECT_FALSE(run->ok());
}

// The bug: the thumbs-down counts lived in memory only; a restart in the
// middle of a failing window forgot it and the bad adapter kept serving.
TEST(AssistantSeamsTest, HealthWatchRemembersThumbsDownAcrossARestart) {
  TempDir dir("health");
  AssistantOptions o = Options(dir.path);
  std::string bad;
  auto down = [](Assistant& a) {
    auto r = a.Chat({{"user", "my pet?"}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    feedback::Event e;
    e.user_id = "u";
    e.signal = feedback::Rating{feedback::Thumb::kDown};
    ASSERT_TRUE(a.Record(e, r->response_id).ok());
  };
  {
    auto a = Assistant::Open(o);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    AddDemos(**a, "d", 4);
    auto v = (*a)->TrainNow();
    ASSERT_TRUE(v.ok() && v->promoted);
    bad = v->version;
    down(**a);
    down(**a);  // half of the window of 4
    EXPECT_EQ((*a)->GetStatus().active_version, bad);
  }
  auto a = Assistant::Open(o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ((*a)->GetStatus().active_version, bad);
  down(**a);
  down(**a);  // completes the window only if the first half was remembered
  EXPECT_EQ((*a)->GetStatus().active_version, "") << "four thumbs-down out of four roll the adapter back";
}

feedback::Event UserDemo(const std::string& id, const std::string& user, const std::string& answer) {
  feedback::Event e = Demo(id);
  e.user_id = user;
  e.signal = feedback::Demonstration{answer};
  return e;
}

// Two users teach; v1 learns from both, v2 descends from v1. Forgetting user
// a retires both versions (the base serves again, the checkpoint is gone),
// and the scheduled retraining window relearns only user b's feedback.
TEST(AssistantForgetTest, ForgettingAUserRetiresWhatWasLearnedFromThemAndRetrainsTheRest) {
  TempDir dir("forget");
  auto opened = Assistant::Open(Options(dir.path));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  const std::vector<runtime::ChatMessage> ask = {{"user", "my pet?"}};
  auto base_reply = a.Chat(ask);
  ASSERT_TRUE(base_reply.ok());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a.Record(UserDemo("a" + std::to_string(i), "u-a", "a secret parrot")).ok());
    ASSERT_TRUE(a.Record(UserDemo("b" + std::to_string(i), "u-b", "a tabby cat")).ok());
  }
  auto w1 = a.TrainNow();
  ASSERT_TRUE(w1.ok() && w1->promoted) << (w1.ok() ? w1->gate_summary : w1.status().ToString());
  ASSERT_TRUE(a.Record(UserDemo("b4", "u-b", "a tabby cat")).ok());
  auto w2 = a.TrainNow();
  ASSERT_TRUE(w2.ok() && w2->promoted);
  ASSERT_EQ(a.registry().Get(w2->version)->parent_version, w1->version);
  const std::string checkpoint = dir.path + "/checkpoints/train.ck";
  ASSERT_TRUE(WriteFileAtomic(checkpoint, "a checkpoint of an interrupted window").ok());

  auto report = a.ForgetUser("u-a");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->events_erased, 4u);
  EXPECT_EQ(std::set<std::string>(report->retired_versions.begin(), report->retired_versions.end()),
            (std::set<std::string>{w1->version, w2->version}));
  EXPECT_TRUE(report->rolled_back);
  EXPECT_EQ(report->active_version, "");
  EXPECT_TRUE(report->retrain_scheduled);
  EXPECT_TRUE(a.registry().List().empty()) << "no stored version was trained on the erased events";
  EXPECT_FALSE(PathExists(checkpoint)) << "nor a checkpoint";
  for (const auto& e : a.registry().Erased()) {
    EXPECT_EQ(e.reason.find("u-a"), std::string::npos) << "the history keeps no erased content: " << e.reason;
    EXPECT_EQ(e.reason.find("parrot"), std::string::npos) << e.reason;
  }
  auto served = a.Chat(ask);
  ASSERT_TRUE(served.ok());
  EXPECT_EQ(served->adapter_version, "");
  EXPECT_EQ(served->text, base_reply->text);
  EXPECT_TRUE(a.GetStatus().new_events == 0 && trainer::RetrainPending(checkpoint));
  // The other devices hear of it at the next sync.
  bool tombstone = false;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir.path + "/sync/outbox", ec)) {
    tombstone = tombstone || f.path().extension() == ".tombstone";
  }
  EXPECT_TRUE(tombstone);

  // The retraining window relearns the rest, without new feedback.
  auto w3 = a.TrainNow();
  ASSERT_TRUE(w3.ok()) << w3.status().ToString();
  ASSERT_TRUE(w3->trained) << w3->skipped_reason;
  ASSERT_TRUE(w3->promoted) << w3->gate_summary;
  EXPECT_FALSE(trainer::RetrainPending(checkpoint));
  auto v3 = a.registry().Load(w3->version);
  ASSERT_TRUE(v3.ok());
  EXPECT_EQ(v3->parent_version, "");
  EXPECT_FALSE(v3->lineage.empty());
  for (const auto& id : v3->lineage) EXPECT_EQ(id[0], 'b') << "relearned an erased event: " << id;
  // Nothing scheduled any more: the next window has nothing new.
  auto w4 = a.TrainNow();
  ASSERT_TRUE(w4.ok());
  EXPECT_FALSE(w4->trained);
}

// Window 1 teaches where the user lives (Lisbon), window 2 the correction
// (Porto). With every old event drawn for replay, the second window trains
// on the correction and the other facts, never on the superseded Lisbon
// events; with supersession off they come back (so the test can fail).
TEST(AssistantForgetTest, NewerFeedbackSupersedesOlderInLaterWindows) {
  for (bool drop : {true, false}) {
    TempDir dir(drop ? "supersede" : "no_supersede");
    auto opened = Assistant::Open(Options(dir.path));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Assistant& a = **opened;
    auto teach = [&](const std::string& id, const std::string& q, const std::string& answer) {
      feedback::Event e = UserDemo(id, "u", answer);
      e.context = {{feedback::Role::kUser, q}};
      ASSERT_TRUE(a.Record(e).ok());
    };
    for (int i = 0; i < 2; ++i) teach("lisbon" + std::to_string(i), "Where do I live?", "You live in Lisbon.");
    teach("dog", "What is my dog called?", "Your dog is called Pixel.");
    teach("car", "What car do I drive?", "You drive a blue Fiat.");
    auto w1 = a.TrainNow();
    ASSERT_TRUE(w1.ok() && w1->trained);
    teach("porto", "where do I live", "You live in Porto.");
    teach("cat", "What is my cat called?", "Your cat is called Miso.");
    trainer::TrainingRunOptions o = Options(dir.path).training;
    o.sample.min_replay = 100;  // every old event is drawn for replay
    o.drop_superseded = drop;
    auto w2 = a.TrainNow(&o);
    ASSERT_TRUE(w2.ok()) << w2.status().ToString();
    ASSERT_TRUE(w2->trained) << w2->skipped_reason;
    auto v2 = a.registry().Load(w2->version);
    ASSERT_TRUE(v2.ok());
    std::set<std::string> lineage(v2->lineage.begin(), v2->lineage.end());
    EXPECT_TRUE(lineage.count("porto") && lineage.count("cat") && lineage.count("dog") && lineage.count("car"));
    EXPECT_EQ(lineage.count("lisbon0") + lineage.count("lisbon1"), drop ? 0u : 2u) << (drop ? "on" : "off");
    bool noted = false;
    for (const auto& n : w2->report.notes) noted = noted || n.find("newer feedback") != std::string::npos;
    EXPECT_EQ(noted, drop);
  }
}

// A window the gate rejects quarantines its new events: the next window
// neither trains on them nor replays them; promoting the rejected candidate
// by hand releases them.
TEST(AssistantForgetTest, ARejectedWindowsEventsAreQuarantinedUntilAForcedPromotion) {
  TempDir dir("quarantine");
  AssistantOptions o = Options(dir.path);
  o.training.force = false;
  o.gate.min_new_loss_improvement = 1e9;  // no candidate can pass
  auto opened = Assistant::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  // Each on its own question: none supersedes another.
  auto record = [&](const std::string& id, const std::string& answer) {
    feedback::Event e = UserDemo(id, "u", answer);
    e.context = {{feedback::Role::kUser, "question " + id + "?"}};
    ASSERT_TRUE(a.Record(e).ok());
  };
  for (int i = 0; i < 3; ++i) record("bad" + std::to_string(i), "a poisoned answer");
  auto rejected = a.TrainNow();
  ASSERT_TRUE(rejected.ok() && rejected->trained) << (rejected.ok() ? rejected->skipped_reason : "");
  EXPECT_FALSE(rejected->promoted);
  record("good", "a fine answer");
  trainer::TrainingRunOptions t = o.training;
  t.sample.min_replay = 100;  // every old event not held back is replayed
  t.force = true;
  auto next = a.TrainNow(&t);
  ASSERT_TRUE(next.ok() && next->trained);
  auto v2 = a.registry().Load(next->version);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->lineage, std::vector<std::string>{"good"}) << "the quarantined events were used";
  auto released = a.Promote(rejected->version, /*force=*/true);
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  auto again = a.TrainNow(&t);  // nothing new: not trained, but the sample now holds them
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->trained);
  record("good2", "another fine answer");
  auto w3 = a.TrainNow(&t);
  ASSERT_TRUE(w3.ok() && w3->trained);
  auto v3 = a.registry().Load(w3->version);
  ASSERT_TRUE(v3.ok());
  std::set<std::string> lineage(v3->lineage.begin(), v3->lineage.end());
  EXPECT_TRUE(lineage.count("bad0") && lineage.count("bad1") && lineage.count("bad2")) << "released events are replayed";
}

// The gate judges what a window optimises: a window of only thumbs-down
// events (KTO, undesirable) and one of only preference pairs (DPO) each
// reach a promoted adapter that makes the rejected answers less likely.
// Before, both were judged on the preferred completions' loss alone: NaN for
// the thumbs-down window, never promoted.
TEST(AssistantForgetTest, ThumbsDownAndPreferenceWindowsReachAPromotedAdapter) {
  TempDir dir("objectives");
  AssistantOptions o = Options(dir.path);
  o.training.force = false;
  o.training.trainer.adamw.lr = 0.02;
  o.training.trainer.max_steps = 8;
  o.gate.max_forgetting_kl = 100;  // the tiny random model's KL says nothing
  o.gate.max_replay_regression = 100;
  auto opened = Assistant::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Assistant& a = **opened;
  for (int i = 0; i < 4; ++i) {
    feedback::Event e;
    e.id = "down" + std::to_string(i);
    e.user_id = "u";
    e.context = {{feedback::Role::kUser, "question " + std::to_string(i) + "?"}};
    e.response = "a wrong answer number " + std::to_string(i);
    e.signal = feedback::Rating{feedback::Thumb::kDown};
    ASSERT_TRUE(a.Record(e).ok());
  }
  auto down = a.TrainNow();
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  ASSERT_TRUE(down->trained) << down->skipped_reason;
  EXPECT_TRUE(down->promoted) << down->gate_summary;
  EXPECT_LT(down->report.unlikelihood_candidate, down->report.unlikelihood_parent);

  for (int i = 0; i < 4; ++i) {
    feedback::Event e;
    e.id = "pref" + std::to_string(i);
    e.user_id = "u";
    e.context = {{feedback::Role::kUser, "which colour " + std::to_string(i) + "?"}};
    e.signal = feedback::Preference{"Blue, clearly.", "Red, I think."};
    ASSERT_TRUE(a.Record(e).ok());
  }
  auto pref = a.TrainNow();
  ASSERT_TRUE(pref.ok()) << pref.status().ToString();
  ASSERT_TRUE(pref->trained) << pref->skipped_reason;
  EXPECT_TRUE(pref->promoted) << pref->gate_summary;
  EXPECT_LT(pref->report.dpo_loss_candidate, pref->report.dpo_loss_parent);
  EXPECT_GT(pref->report.dpo_reward_accuracy, 0.5);
}

}  // namespace
}  // namespace attune
