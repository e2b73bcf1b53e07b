#include "attune/assistant.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "attune/adapters/health.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/core/log.h"
#include "attune/export/files.h"
#include "attune/export/keys.h"
#include "attune/export/sync.h"
#include "attune/replay/store.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model_store.h"
#include "attune/runtime/prompt_cache.h"
#include "attune/trainer/forget.h"
#include "attune/trainer/training_run.h"

namespace attune {

namespace {

struct Remembered {
  std::vector<runtime::ChatMessage> context;
  std::string text, adapter_version;
};

std::string NewResponseId() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  char buf[48];
  std::snprintf(buf, sizeof(buf), "r-%08x-%llu", rd(), (unsigned long long)counter.fetch_add(1));
  return buf;
}

feedback::Role ToRole(const std::string& r) {
  if (r == "system") return feedback::Role::kSystem;
  if (r == "assistant") return feedback::Role::kAssistant;
  if (r == "tool") return feedback::Role::kTool;
  return feedback::Role::kUser;
}

}  // namespace

struct Assistant::Impl {
  AssistantOptions o;
  std::string data_dir;
  std::string model_path;
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<replay::Store> store;
  std::unique_ptr<adapters::Registry> registry;
  adapters::HealthMonitor health;
  std::shared_ptr<trainer::DeviceStateSource> device;
  std::shared_ptr<trainer::PushedDeviceStateSource> pushed = std::make_shared<trainer::PushedDeviceStateSource>();
  std::atomic<bool> use_pushed{false};

  mutable std::mutex mu;  // guards the fields below
  std::map<std::string, Remembered> responses;
  std::deque<std::string> response_order;
  std::optional<trainer::TrainingRunResult> last_run;
  trainer::TrainProgress progress;
  bool training = false;

  std::mutex train_mu;  // one training window at a time
  std::atomic<int> forgets_waiting{0};  // a forget waits for train_mu: stop the window
  // Serialises publishing: the engine's slot follows the registry's active
  // version, whichever of the trainer, chat, record or rollback/promote
  // threads changed it last.
  std::mutex publish_mu;
  std::atomic<bool> stopping{false};
  // Chat replies being generated now (serving_first: training waits for 0).
  std::mutex chat_mu;
  std::condition_variable chat_cv;
  int chats = 0;  // guarded by chat_mu
  std::condition_variable cv;
  std::mutex cv_mu;
  bool wake = false;  // guarded by cv_mu: the device state changed
  std::thread worker;

  std::mutex pins_mu;  // prepared snapshots for Pin(), by version id
  std::map<std::string, std::shared_ptr<const runtime::ActiveAdapter>> pins;

  std::mutex keys_mu;  // opens the key store once and serialises Trust
  std::unique_ptr<export_::KeyStore> keys;

  // This device's keys under <data_dir>/keys, created on first use.
  Result<export_::KeyStore*> Keys() {
    std::lock_guard<std::mutex> l(keys_mu);
    if (!keys) {
      ASSIGN_OR_RETURN(keys, export_::KeyStore::Open(data_dir + "/keys"));
    }
    return keys.get();
  }

  export_::BaseModel Base() const {
    const auto model = engine->model();
    export_::BaseModel b;
    b.info = runtime::BaseInfo(*model);
    b.n_heads = model->config().n_heads;
    b.n_kv_heads = model->config().n_kv_heads;
    b.name_or_path = model_path;
    return b;
  }

  std::string CheckpointPath() const { return data_dir + "/checkpoints/train.ck"; }

  // New events as the window policy counts them: a scheduled retraining
  // (after an erasure) counts as enough new feedback.
  int64_t PolicyNewEvents(uint64_t new_events) const {
    return trainer::PolicyNewEvents(CheckpointPath(), new_events, o.window);
  }

  std::string HostWindowClosed() const { return o.host_window ? o.host_window() : std::string(); }

  explicit Impl(const AssistantOptions& opts) : o(opts), health(opts.health) {}

  Result<ForgetReport> Forget(trainer::ForgetScope scope, const std::string& key);

  trainer::DeviceState ReadDevice() { return use_pushed.load() ? pushed->Read() : device->Read(); }

  // Publishes the registry's active version into the engine's slot. One
  // publisher at a time, and compare-and-publish: a version is published only
  // if it is still the active one after its (slow) load, so a load of v5 can
  // never land after a rollback to v4 was published.
  Status PublishActive() {
    std::lock_guard<std::mutex> one(publish_mu);
    std::string active = registry->Active();
    for (;;) {
      if (active.empty()) {
        engine->ClearAdapter();
        break;
      }
      if (engine->adapter_version() == active) break;
      ASSIGN_OR_RETURN(adapters::Adapter a, registry->Load(active));
      const std::string now = registry->Active();
      if (now != active) {
        active = now;  // changed while loading: publish the newer state instead
        continue;
      }
      RETURN_IF_ERROR(engine->SetAdapter(a, active));
      break;
    }
    // The version that served before the current one: the health watch
    // compares the new version's thumbs-down rate with it.
    std::string previous;
    auto history = registry->History();
    if (!history.empty() && history.back().to_version == active) previous = history.back().from_version;
    health.SetActive(active, previous);
    SaveHealth();
    return Status::Ok();
  }

  std::string HealthPath() const { return data_dir + "/adapters/HEALTH"; }

  // The watch's counts survive a restart; losing one update only delays a
  // rollback, so a failed write is logged, not returned.
  void SaveHealth() {
    Status st = health.Save(HealthPath());
    if (!st.ok()) ATTUNE_LOG(kWarning, "could not save the health watch: " << st.ToString());
  }

  // Counts a Chat reply in flight for WaitWhileChatting.
  class ChatScope {
   public:
    explicit ChatScope(Impl* p) : p_(p) {
      ++chats_on_this_thread;
      std::lock_guard<std::mutex> l(p_->chat_mu);
      ++p_->chats;
    }
    ~ChatScope() {
      --chats_on_this_thread;
      {
        std::lock_guard<std::mutex> l(p_->chat_mu);
        --p_->chats;
      }
      p_->chat_cv.notify_all();
    }
    ChatScope(const ChatScope&) = delete;
    ChatScope& operator=(const ChatScope&) = delete;

   private:
    Impl* p_;
  };

  // Chat replies the calling thread is inside of (a window run from a reply's
  // text callback must not wait for that reply).
  static inline thread_local int chats_on_this_thread = 0;

  // On the training thread: returns once no Chat reply is being generated (or
  // the assistant is shutting down).
  void WaitWhileChatting() {
    if (!o.serving_first || chats_on_this_thread > 0) return;
    std::unique_lock<std::mutex> l(chat_mu);
    chat_cv.wait(l, [&] { return chats == 0 || stopping.load(); });
  }

  Result<trainer::TrainingRunResult> TrainOnce(bool check_window, const trainer::TrainingRunOptions& run_options) {
    std::lock_guard<std::mutex> one(train_mu);
    {
      std::lock_guard<std::mutex> l(mu);
      training = true;
    }
    auto stats = store->GetStats();
    auto should_stop = [&]() {
      WaitWhileChatting();
      if (o.between_steps && !stopping.load() && o.between_steps()) return true;
      if (stopping.load() || forgets_waiting.load() > 0) return true;
      if (!check_window) return false;
      if (!HostWindowClosed().empty()) return true;
      return !trainer::EvaluateWindow(o.window, ReadDevice(), PolicyNewEvents(stats.ok() ? stats->new_since_cursor : 0))
                  .open;
    };
    auto on_progress = [&](const trainer::TrainProgress& p) {
      {
        std::lock_guard<std::mutex> l(mu);
        progress = p;
      }
      if (o.on_progress) o.on_progress(p);
    };
    // The window's set-up (reference answers, evaluation) has no micro-step
    // boundaries: hold it back until serving is quiet.
    WaitWhileChatting();
    if (o.between_steps) (void)o.between_steps();
    auto res = trainer::RunTrainingWindow(engine->model(), *store, *registry, CheckpointPath(), run_options,
                                          should_stop, on_progress);
    if (res.ok() && res->promoted) {
      Status st = PublishActive();
      if (!st.ok()) ATTUNE_LOG(kError, "could not publish the promoted adapter: " << st.ToString());
    }
    {
      std::lock_guard<std::mutex> l(mu);
      training = false;
      if (res.ok()) last_run = *res;
    }
    if (res.ok() && o.on_trained) o.on_trained(*res);
    return res;
  }

  void Loop() {
    while (!stopping.load()) {
      auto stats = store->GetStats();
      if (stats.ok()) {
        auto d = trainer::EvaluateWindow(o.window, ReadDevice(), PolicyNewEvents(stats->new_since_cursor));
        if (d.open && HostWindowClosed().empty()) {
          auto r = TrainOnce(/*check_window=*/true, o.training);
          if (!r.ok()) ATTUNE_LOG(kWarning, "background training failed: " << r.status().ToString());
        }
      }
      std::unique_lock<std::mutex> lk(cv_mu);
      cv.wait_for(lk, o.poll_interval, [&] { return stopping.load() || wake; });
      wake = false;
    }
  }

  void ApplyHealth(const adapters::HealthVerdict& v) {
    if (!v.rollback) return;
    auto r = adapters::ApplyVerdict(*registry, v);
    if (!r.ok()) {
      ATTUNE_LOG(kWarning, "automatic rollback failed: " << r.status().ToString());
      return;
    }
    ATTUNE_LOG(kWarning, "rolled back " << registry->Label(v.version) << ": " << v.reason);
    Status st = PublishActive();
    if (!st.ok()) ATTUNE_LOG(kError, "could not publish after rollback: " << st.ToString());
  }
};

Assistant::Assistant(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Assistant>> Assistant::Open(const AssistantOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  impl->data_dir = ResolveDataDir(options.data_dir);
  RETURN_IF_ERROR(MakeDirs(impl->data_dir + "/checkpoints"));
  ASSIGN_OR_RETURN(std::string model_path, runtime::ResolveModelPath(options.model_path));
  runtime::EngineOptions eo;
  eo.model_path = model_path;
  impl->model_path = model_path;
  eo.chat_template = options.chat_template;
  eo.prompt_cache_bytes = options.prompt_cache_bytes;
  auto engine = runtime::Engine::Open(eo);
  if (!engine.ok()) return engine.status().WithContext("model");
  impl->engine = std::move(*engine);
  auto store = replay::Store::Open(replay::Options{}, impl->data_dir + "/replay");
  if (!store.ok()) return store.status().WithContext("feedback store");
  impl->store = std::move(*store);
  adapters::RegistryOptions ro;
  ro.gate = options.gate;
  // Adapters for another base model (imported, synced) are refused.
  ro.base_model = runtime::BaseInfo(*impl->engine->model());
  auto reg = adapters::Registry::Open(ro, impl->data_dir + "/adapters");
  if (!reg.ok()) return reg.status().WithContext("adapter registry");
  impl->registry = std::move(*reg);
  impl->device = options.device ? options.device : std::make_shared<trainer::LinuxDeviceStateSource>();
  if (Status st = impl->health.Load(impl->HealthPath()); !st.ok()) {
    // Damaged: start counting afresh rather than refuse to serve.
    ATTUNE_LOG(kWarning, st.ToString() << "; the health watch starts afresh");
  }
  RETURN_IF_ERROR(impl->PublishActive().WithContext("active adapter"));
  std::unique_ptr<Assistant> a(new Assistant(std::move(impl)));
  if (options.background_training) a->impl_->worker = std::thread([p = a->impl_.get()] { p->Loop(); });
  return a;
}

Assistant::~Assistant() {
  {
    // Under the mutex: the loop is then either before its predicate check
    // (and sees the flag) or waiting (and gets the notification).
    std::lock_guard<std::mutex> lk(impl_->cv_mu);
    impl_->stopping.store(true);
  }
  impl_->cv.notify_all();
  // A window waiting for replies to finish stops waiting (its predicate reads
  // `stopping`; taking the mutex orders the store before the notification).
  { std::lock_guard<std::mutex> lk(impl_->chat_mu); }
  impl_->chat_cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

Result<ChatReply> Assistant::Chat(const std::vector<runtime::ChatMessage>& messages, const runtime::TextCallback& on_text) {
  return Chat(messages, impl_->o.generation, on_text);
}

Result<ChatReply> Assistant::Chat(const std::vector<runtime::ChatMessage>& messages,
                                  const runtime::GenerateOptions& options, const runtime::TextCallback& on_text) {
  runtime::GenerateResult r;
  {
    Impl::ChatScope serving(impl_.get());
    ASSIGN_OR_RETURN(r, impl_->engine->Chat(messages, options, on_text));
  }
  if (r.finish_reason == "non_finite") impl_->ApplyHealth(impl_->health.RecordNonFinite(r.adapter_version));
  ChatReply reply;
  reply.text = r.text;
  reply.adapter_version = r.adapter_version;
  reply.adapter_label = r.adapter_version.empty() ? "base" : impl_->registry->Label(r.adapter_version);
  reply.finish_reason = r.finish_reason;
  reply.prompt_tokens = r.prompt_tokens;
  reply.cached_prompt_tokens = r.cached_prompt_tokens;
  reply.completion_tokens = int(r.tokens.size());
  reply.response_id = NewResponseId();
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->responses[reply.response_id] = {messages, r.text, r.adapter_version};
  impl_->response_order.push_back(reply.response_id);
  while (impl_->response_order.size() > impl_->o.remembered_responses) {
    impl_->responses.erase(impl_->response_order.front());
    impl_->response_order.pop_front();
  }
  return reply;
}

Result<std::string> Assistant::Record(feedback::Event event, const std::string& response_id) {
  if (!response_id.empty()) {
    Remembered rem;
    {
      std::lock_guard<std::mutex> l(impl_->mu);
      auto it = impl_->responses.find(response_id);
      if (it == impl_->responses.end()) {
        return NotFoundError("response id '" + response_id + "' is unknown (only the last " +
                             std::to_string(impl_->o.remembered_responses) + " replies are remembered)");
      }
      rem = it->second;
    }
    if (event.context.empty()) {
      for (const auto& m : rem.context) event.context.push_back({ToRole(m.role), m.content});
    }
    if (event.response.empty()) event.response = rem.text;
    if (event.adapter_version.empty()) event.adapter_version = rem.adapter_version;
    if (event.id.empty()) event.id = "fb-" + response_id;
  }
  RETURN_IF_ERROR(feedback::ValidateAndNormalize(event));
  ASSIGN_OR_RETURN(replay::AppendResult ar, impl_->store->Append(event));
  // A re-sent event (same id) was counted the first time.
  const bool fresh = ar.outcome == replay::AppendOutcome::kStored;
  if (const auto* rating = std::get_if<feedback::Rating>(&event.signal); rating && fresh) {
    auto verdict = impl_->health.RecordRating(event.adapter_version, rating->thumb == feedback::Thumb::kDown);
    impl_->SaveHealth();
    impl_->ApplyHealth(verdict);
  }
  return event.id;
}

void Assistant::SetDeviceState(const trainer::DeviceState& state) {
  impl_->pushed->Set(state);
  impl_->use_pushed.store(true);
  {
    std::lock_guard<std::mutex> lk(impl_->cv_mu);
    impl_->wake = true;  // re-evaluate the window now, not at the next poll
  }
  impl_->cv.notify_all();
}

Result<trainer::TrainingRunResult> Assistant::TrainNow(const trainer::TrainingRunOptions* options) {
  return impl_->TrainOnce(/*check_window=*/false, options ? *options : impl_->o.training);
}

AssistantStatus Assistant::GetStatus() const {
  AssistantStatus s;
  auto stats = impl_->store->GetStats();
  if (stats.ok()) {
    s.stored_events = stats->events;
    s.new_events = stats->new_since_cursor;
  }
  auto d = trainer::EvaluateWindow(impl_->o.window, impl_->ReadDevice(), impl_->PolicyNewEvents(s.new_events));
  s.window_open = d.open;
  s.window_closed_because = d.closed_because;
  if (std::string host = impl_->HostWindowClosed(); !host.empty()) {
    s.window_open = false;
    s.window_closed_because.push_back(host);
  }
  const runtime::PromptCacheStats pc = impl_->engine->prompt_cache_stats();
  s.prompt_cache_lookups = pc.lookups;
  s.prompt_cache_hits = pc.hits;
  s.prompt_cache_reused_tokens = pc.reused_tokens;
  s.prompt_cache_bytes = pc.bytes;
  s.active_version = impl_->registry->Active();
  s.active_label = s.active_version.empty() ? "base" : impl_->registry->Label(s.active_version);
  std::lock_guard<std::mutex> l(impl_->mu);
  s.training = impl_->training;
  s.progress = impl_->progress;
  s.last_run = impl_->last_run;
  return s;
}

Result<std::string> Assistant::Rollback() {
  adapters::RollbackRequest req;
  req.cause = adapters::ActivationCause::kRollbackManual;
  ASSIGN_OR_RETURN(std::string v, impl_->registry->Rollback(req));
  RETURN_IF_ERROR(impl_->PublishActive());
  return v;
}

Result<std::string> Assistant::Promote(const std::string& version, bool force) {
  ASSIGN_OR_RETURN(std::string id, impl_->registry->Resolve(version));
  ASSIGN_OR_RETURN(adapters::PromoteResult r, impl_->registry->Promote(id, std::nullopt, force));
  if (!r.promoted) return FailedPreconditionError("the gate rejected " + impl_->registry->Label(id) + ": " + r.decision.Summary());
  RETURN_IF_ERROR(impl_->PublishActive());
  if (force) {
    // Promoted by hand: the events its window was quarantined for are released.
    ASSIGN_OR_RETURN(adapters::Adapter a, impl_->registry->Load(id));
    RETURN_IF_ERROR(impl_->store->Release(a.lineage).WithContext("releasing the quarantined events"));
  }
  return id;
}

Result<ForgetReport> Assistant::Impl::Forget(trainer::ForgetScope scope, const std::string& key) {
  // A running window would register a candidate trained on what is being
  // erased: stop it (checkpointed; the checkpoint is discarded below).
  forgets_waiting.fetch_add(1);
  std::unique_lock<std::mutex> one(train_mu);
  forgets_waiting.fetch_sub(1);
  ASSIGN_OR_RETURN(trainer::ForgetOutcome out, trainer::ForgetAndRetire(*store, *registry, CheckpointPath(), scope, key));
  if (out.retired.rolled_back) RETURN_IF_ERROR(PublishActive());
  {
    std::lock_guard<std::mutex> l(pins_mu);
    for (const auto& id : out.retired.erased) pins.erase(id);
  }
  if (!out.affected_versions.empty()) {
    // The user's other devices erase the same versions at their next sync.
    auto k = Keys();
    Status st = k.ok() ? export_::RecordErasure(**k, data_dir + "/sync", out.affected_versions,
                                                "forget request").status()
                       : k.status();
    if (!st.ok()) ATTUNE_LOG(kWarning, "erased here, but the notice for synced devices failed: " << st.ToString());
  }
  ForgetReport r;
  r.events_erased = out.events_erased;
  r.affected_adapter_versions = out.affected_versions;
  r.retired_versions = out.retired.erased;
  r.rolled_back = out.retired.rolled_back;
  r.active_version = registry->Active();
  r.retrain_scheduled = out.retrain_scheduled;
  if (out.retrain_scheduled) {
    std::lock_guard<std::mutex> lk(cv_mu);
    wake = true;  // the retraining may start as soon as the window opens
  }
  cv.notify_all();
  return r;
}

Result<ForgetReport> Assistant::ForgetUser(const std::string& user_id) {
  return impl_->Forget(trainer::ForgetScope::kUser, user_id);
}

Result<ForgetReport> Assistant::ForgetEvent(const std::string& event_id) {
  return impl_->Forget(trainer::ForgetScope::kEvent, event_id);
}

Result<ExportResult> Assistant::Export(const std::string& version, const std::string& format,
                                      const std::string& path) {
  ASSIGN_OR_RETURN(export_::AdapterFormat f, export_::ParseAdapterFormat(format));
  std::string which = version;
  if (which.empty()) {
    which = impl_->registry->Active();
    if (which.empty()) return FailedPreconditionError("no adapter is active: the base model serves; name a version");
  }
  const export_::BaseModel base = impl_->Base();
  export_::KeyStore* keys = nullptr;
  if (f == export_::AdapterFormat::kBundle) {
    ASSIGN_OR_RETURN(keys, impl_->Keys());
  }
  ASSIGN_OR_RETURN(std::string id, export_::ExportVersion(*impl_->registry, which, f, &base, keys, path));
  return ExportResult{id, impl_->registry->Label(id), std::string(export_::AdapterFormatName(f)), path};
}

Result<ImportResult> Assistant::Import(const std::string& path, bool force_promote) {
  ASSIGN_OR_RETURN(export_::KeyStore * keys, impl_->Keys());
  const export_::BaseModel base = impl_->Base();
  ASSIGN_OR_RETURN(export_::ImportedAdapter in, export_::ReadAdapter(path, &base, keys));
  ImportResult r;
  r.format = std::string(export_::AdapterFormatName(in.format));
  if (in.bundle) r.signer_device_id = in.bundle->signer_device_id;
  auto id = export_::AddImported(*impl_->registry, std::move(in.adapter));
  if (!id.ok()) return id.status().WithContext(path);
  r.version = *id;
  r.label = impl_->registry->Label(*id);
  if (force_promote) {
    ASSIGN_OR_RETURN(std::string promoted, Promote(*id, /*force=*/true));
    r.promoted = promoted == *id;
  }
  return r;
}

Result<SyncResult> Assistant::Sync(const std::string& dir) {
  if (dir.empty()) return InvalidArgumentError("sync: the folder is empty");
  ASSIGN_OR_RETURN(export_::KeyStore * keys, impl_->Keys());
  export_::SyncOptions o;
  o.base_model = runtime::BaseInfo(*impl_->engine->model());
  ASSIGN_OR_RETURN(export_::SyncReport rep, export_::Sync(*impl_->registry, *keys, dir, impl_->data_dir + "/sync", o));
  // An applied erasure may have rolled the active version back.
  RETURN_IF_ERROR(impl_->PublishActive());
  SyncResult r;
  r.device_id = keys->device().device_id;
  r.exported = rep.exported;
  for (const auto& i : rep.imported) r.imported.push_back(i.local_id);
  r.merged = rep.merged;
  r.erased = rep.erased;
  for (const auto& x : rep.refused) r.refused.push_back(x.path + ": " + x.reason);
  r.active_version = impl_->registry->Active();
  return r;
}

Result<std::string> Assistant::DeviceKey() {
  ASSIGN_OR_RETURN(export_::KeyStore * keys, impl_->Keys());
  return keys->device().line();
}

Result<std::string> Assistant::TrustDevice(const std::string& public_key_line) {
  ASSIGN_OR_RETURN(export_::KeyStore * keys, impl_->Keys());
  std::lock_guard<std::mutex> l(impl_->keys_mu);
  ASSIGN_OR_RETURN(export_::PeerKey peer, keys->Trust(public_key_line, "the public key line"));
  return peer.device_id;
}

const runtime::Engine& Assistant::engine() const { return *impl_->engine; }

Result<Assistant::PinnedAdapter> Assistant::Pin(const std::string& which) {
  PinnedAdapter p;
  p.label = "base";
  if (which == "base") return p;
  std::string id = impl_->registry->Active();
  if (!which.empty()) {
    ASSIGN_OR_RETURN(id, impl_->registry->Resolve(which));
  }
  if (id.empty()) return p;
  p.version = id;
  p.label = impl_->registry->Label(id);
  std::lock_guard<std::mutex> l(impl_->pins_mu);
  auto it = impl_->pins.find(id);
  if (it != impl_->pins.end()) {
    p.snapshot = it->second;
    return p;
  }
  ASSIGN_OR_RETURN(adapters::Adapter a, impl_->registry->Load(id));
  ASSIGN_OR_RETURN(p.snapshot, impl_->engine->PrepareAdapter(a, id));
  // A handful of versions are served at once in practice; keep memory bounded.
  if (impl_->pins.size() >= 4) impl_->pins.erase(impl_->pins.begin());
  impl_->pins[id] = p.snapshot;
  return p;
}

const adapters::Registry& Assistant::registry() const { return *impl_->registry; }

}  // namespace attune
