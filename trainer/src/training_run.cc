#include "attune/trainer/training_run.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <variant>

#include "attune/adapters/gate.h"
#include "attune/core/file.h"
#include "attune/core/log.h"
#include "attune/feedback/supersede.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/generate.h"
#include "attune/runtime/scope.h"
#include "attune/trainer/forget.h"
#include "anchors.h"

namespace attune::trainer {

using runtime::kNumLoraTargets;

Result<adapters::Adapter> ToAdapter(const runtime::Model& model, const LoraConfig& config,
                                    const std::vector<at::Tensor>& tensors) {
  adapters::Adapter a;
  adapters::BaseModelInfo base = runtime::BaseInfo(model);
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = config.rank;
  a.alpha = config.alpha;
  a.rslora = config.rslora;
  for (int t = 0; t < kNumLoraTargets; ++t) {
    if (!config.targets[size_t(t)]) continue;
    a.targets.push_back(static_cast<adapters::LoraTarget>(t));
    a.base_dims[size_t(t)] = base.dims[size_t(t)];
  }
  a.layers.resize(size_t(base.n_layers));
  size_t i = 0;
  auto take = [&](adapters::Matrix* m) -> Status {
    if (i >= tensors.size()) return InvalidArgumentError("too few LoRA tensors for this configuration");
    at::Tensor x = tensors[i++].detach().contiguous().to(at::kFloat);
    m->shape = x.sizes().vec();
    m->data.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
    return Status::Ok();
  };
  for (int64_t l = 0; l < base.n_layers; ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!config.targets[size_t(t)]) continue;
      RETURN_IF_ERROR(take(&a.layers[size_t(l)][size_t(t)].a));
      RETURN_IF_ERROR(take(&a.layers[size_t(l)][size_t(t)].b));
    }
  }
  if (i != tensors.size()) return InvalidArgumentError("more LoRA tensors than this configuration has");
  a.training_config["targets"] = TargetsToString(config.targets);
  a.training_config["dropout"] = std::to_string(config.dropout);
  a.created_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  RETURN_IF_ERROR(a.Validate());
  return a;
}

Result<std::vector<at::Tensor>> FromAdapter(const runtime::Model& model, const LoraConfig& config,
                                            const adapters::Adapter& a) {
  RETURN_IF_ERROR(a.CheckCompatible(runtime::BaseInfo(model)));
  if (a.rank != config.rank || a.alpha != config.alpha || a.rslora != config.rslora) {
    return FailedPreconditionError("the active adapter has rank " + std::to_string(a.rank) + " and alpha " +
                                   std::to_string(a.alpha) + ", this run uses rank " + std::to_string(config.rank) +
                                   " and alpha " + std::to_string(config.alpha));
  }
  for (int t = 0; t < kNumLoraTargets; ++t) {
    if (a.HasTarget(static_cast<adapters::LoraTarget>(t)) != config.targets[size_t(t)]) {
      return FailedPreconditionError("the active adapter targets other layers than this run");
    }
  }
  std::vector<at::Tensor> out;
  for (const auto& layer : a.layers) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!config.targets[size_t(t)]) continue;
      for (const adapters::Matrix* m : {&layer[size_t(t)].a, &layer[size_t(t)].b}) {
        out.push_back(at::from_blob(const_cast<float*>(m->data.data()), m->shape, at::kFloat).clone());
      }
    }
  }
  return out;
}

namespace {

// The batch an interrupted window was training on, re-read from the store,
// or why the checkpoint cannot be resumed (then it is discarded).
struct Resumed {
  std::optional<replay::SampleBatch> batch;
  std::string discard_reason;
};

Result<Resumed> ResumeBatch(const replay::Store& store, const adapters::Registry& registry, const std::string& ck_path) {
  Resumed out;
  auto w = ReadCheckpointWindow(ck_path);
  if (!w.ok()) {
    if (w.status().code() != StatusCode::kDataLoss && w.status().code() != StatusCode::kUnsupported) return w.status();
    out.discard_reason = w.status().message();
    return out;
  }
  if (w->new_event_ids.empty()) {
    out.discard_reason = "it does not record which events it trained on (written by an older version)";
    return out;
  }
  if (w->parent_version != registry.Active()) {
    out.discard_reason = "it continues from " + (w->parent_version.empty() ? std::string("no adapter") : registry.Label(w->parent_version)) +
                         ", but the active adapter is now " + (registry.Active().empty() ? std::string("none") : registry.Label(registry.Active())) +
                         " (rolled back or replaced)";
    return out;
  }
  ASSIGN_OR_RETURN(replay::Stats stats, store.GetStats());
  if (stats.cursor != w->cursor_before) {
    out.discard_reason = "the feedback store's training cursor moved since (another run recorded its training)";
    return out;
  }
  replay::SampleBatch b;
  b.cursor_before = w->cursor_before;
  b.cursor_after = w->cursor_after;
  for (auto [ids, dst] : {std::pair{&w->new_event_ids, &b.new_events}, std::pair{&w->replay_event_ids, &b.replay_events}}) {
    for (const auto& id : *ids) {
      auto e = store.Get(id);
      if (e.ok()) {
        dst->push_back(std::move(*e));
        continue;
      }
      if (e.status().code() != StatusCode::kNotFound) return e.status();
      out.discard_reason = "event '" + id + "' it trains on was erased or evicted";
      return out;
    }
  }
  out.batch = std::move(b);
  return out;
}

// Removes the checkpoint and says why, so that a window never wedges on it.
void Discard(const std::string& ck_path, const std::string& why, std::vector<std::string>* notes) {
  std::remove(ck_path.c_str());
  const std::string line = "discarded the checkpoint '" + ck_path + "' of an interrupted window: " + why + "; starting a fresh window";
  ATTUNE_LOG(kWarning, line);
  notes->push_back(line);
}

// Removes from `batch` the events that newer feedback supersedes (a scan of
// the batch's users' events finds the newest answer to each of their
// questions); returns how many.
Result<size_t> DropSuperseded(const replay::Store& store, replay::SampleBatch* batch) {
  std::set<std::string> users;
  for (const auto* events : {&batch->new_events, &batch->replay_events}) {
    for (const auto& se : *events) users.insert(se.event.user_id);
  }
  feedback::AnswerIndex answers;
  for (const auto& user : users) {
    replay::ScanOptions so;
    so.user_id = user;
    RETURN_IF_ERROR(store.Scan(so, [&](const replay::StoredEvent& se) {
      answers.Add(se.seq, se.event);
      return true;
    }));
  }
  size_t dropped = 0;
  for (auto* events : {&batch->new_events, &batch->replay_events}) {
    auto end = std::remove_if(events->begin(), events->end(), [&](const replay::StoredEvent& se) {
      return answers.Superseded(se.seq, se.event);
    });
    dropped += size_t(events->end() - end);
    events->erase(end, events->end());
  }
  return dropped;
}

// The events that approve a reply of the base model: a thumbs-up, ACCEPTED
// or COPIED on a response with no adapter version ("" = the base model).
std::set<std::string> ApprovedBaseReplies(const replay::SampleBatch& b) {
  std::set<std::string> ids;
  for (const auto* events : {&b.new_events, &b.replay_events}) {
    for (const auto& se : *events) {
      const feedback::Event& e = se.event;
      if (!e.adapter_version.empty() || e.response.empty()) continue;
      const auto* r = std::get_if<feedback::Rating>(&e.signal);
      const auto* im = std::get_if<feedback::Implicit>(&e.signal);
      if ((r && r->thumb == feedback::Thumb::kUp) || (im && (im->action == feedback::ImplicitAction::kAccepted ||
                                                             im->action == feedback::ImplicitAction::kCopied))) {
        ids.insert(e.id);
      }
    }
  }
  return ids;
}

// Whether the base model already says what `e` teaches, so that the
// adapter has nothing to add to its message: the approval of a reply the
// base gave (`approved`), or a positive example whose completion is,
// teacher-forced, the base's greedy answer.
Result<bool> BaseSaysIt(const runtime::Model& model, const feedback::Example& e,
                        const std::set<std::string>& approved) {
  const bool wanted = e.kind == feedback::ExampleKind::kSft || (e.kind == feedback::ExampleKind::kKto && e.desirable);
  if (!wanted) return false;
  if (approved.count(e.event_id)) return true;
  return runtime::GivesAnswer(model, nullptr, ChatOf(e), e.completion);
}

// The candidate's scope (TrainerOptions::scope): in, the last user message
// of every example the window trained on, new and replayed, unless the base
// model already gives every answer taught for it (BaseSaysIt); out, those,
// the anchors' pool and the window's messages asked about no one. When the
// base gives every answer of the window, all its messages are in.
Status FitCandidateScope(const runtime::Model& model, const TrainerOptions& o, const TrainInput& in,
                         const std::set<std::string>& approved, adapters::Adapter* cand,
                         std::vector<std::string>* notes) {
  std::vector<std::string> messages;  // in order of first appearance
  std::map<std::string, bool> needs_adapter;
  for (const auto* examples : {&in.new_examples, &in.replay_examples}) {
    for (const feedback::Example& e : *examples) {
      for (auto m = e.context.rbegin(); m != e.context.rend(); ++m) {
        if (m->role != feedback::Role::kUser) continue;
        auto it = needs_adapter.find(m->content);
        if (it != needs_adapter.end() && it->second) break;  // already in
        ASSIGN_OR_RETURN(bool base_says, BaseSaysIt(model, e, approved));
        if (it == needs_adapter.end()) messages.push_back(m->content);
        needs_adapter[m->content] = !base_says;
        break;
      }
    }
  }
  if (messages.empty()) {
    notes->push_back("no scope: the window's examples have no user message");
    return Status::Ok();
  }
  std::vector<std::string> inside, base_answers;
  for (const auto& m : messages) (needs_adapter[m] ? inside : base_answers).push_back(m);
  if (inside.empty()) {
    notes->push_back("scope: the base model already gives every answer of the window; all its messages are in");
    inside.swap(base_answers);
  }
  std::vector<std::string> outside = o.anchor_prompts.empty() ? internal::AnchorPool() : o.anchor_prompts;
  outside.insert(outside.end(), base_answers.begin(), base_answers.end());
  for (std::string& c : internal::ContrastPrompts(inside, int64_t(inside.size()))) {
    if (!needs_adapter.count(c)) outside.push_back(std::move(c));
  }
  auto scope = runtime::FitScope(model, inside, outside);
  if (!scope.ok()) return Status(scope.status().code(), "fitting the scope: " + scope.status().message());
  cand->scope = std::move(*scope);
  cand->training_config["scope"] = "probe";
  notes->push_back("scope fitted on " + std::to_string(cand->scope.fitted_in) + " message(s) in and " +
                   std::to_string(cand->scope.fitted_out) + " out (" + std::to_string(base_answers.size()) +
                   " the base model already answers as taught among them), " + std::to_string(cand->scope.misplaced) +
                   " on the wrong side");
  return Status::Ok();
}

WindowIdentity IdentityOf(const replay::SampleBatch& b, const std::string& parent) {
  WindowIdentity w;
  for (const auto& e : b.new_events) w.new_event_ids.push_back(e.event.id);
  for (const auto& e : b.replay_events) w.replay_event_ids.push_back(e.event.id);
  w.parent_version = parent;
  w.cursor_before = b.cursor_before;
  w.cursor_after = b.cursor_after;
  return w;
}

Result<TrainingRunResult> RunWindow(std::shared_ptr<const runtime::Model> model, replay::Store& store,
                                    adapters::Registry& registry, const std::string& checkpoint_path,
                                    const TrainingRunOptions& options, const std::function<bool()>& should_stop,
                                    const std::function<void(const TrainProgress&)>& progress);

}  // namespace

// The module edge: converting adapters to and from tensors is LibTorch work
// too, and an exception here would end the assistant's training thread.
Result<TrainingRunResult> RunTrainingWindow(std::shared_ptr<const runtime::Model> model, replay::Store& store,
                                            adapters::Registry& registry, const std::string& checkpoint_path,
                                            const TrainingRunOptions& options,
                                            const std::function<bool()>& should_stop,
                                            const std::function<void(const TrainProgress&)>& progress) {
  try {
    return RunWindow(std::move(model), store, registry, checkpoint_path, options, should_stop, progress);
  } catch (const c10::Error& e) {
    return InternalError(std::string("training window failed in LibTorch: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return UnavailableError("training window ran out of memory");
  } catch (const std::exception& e) {
    return InternalError(std::string("training window failed: ") + e.what());
  }
}

namespace {

Result<TrainingRunResult> RunWindow(std::shared_ptr<const runtime::Model> model, replay::Store& store,
                                    adapters::Registry& registry, const std::string& checkpoint_path,
                                    const TrainingRunOptions& options, const std::function<bool()>& should_stop,
                                    const std::function<void(const TrainProgress&)>& progress) {
  TrainingRunResult res;
  // An interrupted window resumes on exactly its own events; feedback that
  // arrived meanwhile waits for the next window.
  std::optional<replay::SampleBatch> resumed;
  if (!checkpoint_path.empty() && PathExists(checkpoint_path)) {
    ASSIGN_OR_RETURN(Resumed r, ResumeBatch(store, registry, checkpoint_path));
    if (r.batch) resumed = std::move(r.batch);
    else Discard(checkpoint_path, r.discard_reason, &res.report.notes);
  }
  // After an erasure retired adapters (forget.h), the remaining feedback is
  // relearned: the batch comes from the old events, trained as new ones.
  const bool retrain = !checkpoint_path.empty() && RetrainPending(checkpoint_path);
  replay::SampleBatch batch;
  if (resumed) {
    batch = std::move(*resumed);
  } else {
    replay::SampleOptions so = options.sample;
    if (retrain) so.min_replay = std::max(so.min_replay, so.max_new);
    ASSIGN_OR_RETURN(batch, store.Sample(so));
  }
  if (options.drop_superseded) {
    ASSIGN_OR_RETURN(size_t dropped, DropSuperseded(store, &batch));
    if (dropped > 0) {
      res.report.notes.push_back(std::to_string(dropped) +
                                 " event(s) not trained on: newer feedback of the same user gives another answer");
    }
  }
  if (batch.new_events.empty() && !(retrain && !batch.replay_events.empty())) {
    if (retrain) std::remove(RetrainMarkerPath(checkpoint_path).c_str());  // nothing left to relearn
    res.skipped_reason = "no new feedback since the last training run";
    return res;
  }
  if (retrain) res.report.notes.push_back("retraining the remaining feedback after an erasure retired adapters");
  TrainInput in;
  std::vector<std::string> lineage;
  auto convert = [&](const std::vector<replay::StoredEvent>& events, std::vector<feedback::Example>* dst) {
    for (const auto& se : events) {
      lineage.push_back(se.event.id);
      auto ex = feedback::ToExamples(se.event, options.examples);
      if (!ex.ok()) {
        res.report.notes.push_back("event '" + se.event.id + "' skipped: " + ex.status().message());
        continue;
      }
      dst->insert(dst->end(), ex->begin(), ex->end());
    }
  };
  convert(batch.new_events, &in.new_examples);
  convert(batch.replay_events, retrain ? &in.new_examples : &in.replay_examples);

  TrainerOptions to = options.trainer;
  to.rotation = int64_t(batch.cursor_before);  // a different held-out slice each window
  const std::string active = registry.Active();
  if (!active.empty()) {
    ASSIGN_OR_RETURN(adapters::Adapter parent, registry.Load(active));
    auto tensors = FromAdapter(*model, to.lora, parent);
    if (tensors.ok()) {
      in.parent = std::move(*tensors);
      in.parent_version = active;
    } else {
      res.report.notes.push_back("starting from zero: " + tensors.status().message());
    }
  }
  in.window = IdentityOf(batch, in.parent_version);
  Trainer trainer(model, to);
  auto ran = trainer.Run(in, checkpoint_path, should_stop, progress);
  if (!ran.ok() && resumed && PathExists(checkpoint_path) &&
      (ran.status().code() == StatusCode::kFailedPrecondition || ran.status().code() == StatusCode::kDataLoss)) {
    // The options changed since (rank, steps, ...): the same events, afresh.
    Discard(checkpoint_path, ran.status().message(), &res.report.notes);
    ran = trainer.Run(in, checkpoint_path, should_stop, progress);
  }
  ASSIGN_OR_RETURN(TrainOutcome out, std::move(ran));
  out.report.notes.insert(out.report.notes.begin(), res.report.notes.begin(), res.report.notes.end());
  res.report = out.report;
  res.trained = true;
  res.completed = out.report.completed;
  if (!res.completed) return res;

  ASSIGN_OR_RETURN(adapters::Adapter cand, ToAdapter(*model, to.lora, out.adapter));
  cand.parent_version = in.parent_version;
  cand.lineage = lineage;
  if (to.scope) {
    RETURN_IF_ERROR(FitCandidateScope(*model, to, in, ApprovedBaseReplies(batch), &cand, &res.report.notes));
  }
  const TrainReport& r = out.report;
  adapters::GateInput gate;
  gate.new_loss = r.new_loss_candidate;
  gate.new_loss_parent = r.new_loss_parent;
  if (std::isfinite(r.objective_score_parent)) {
    // Thumbs-down and preference windows: judged on what they optimise.
    gate.new_loss = r.objective_score_candidate;
    gate.new_loss_parent = r.objective_score_parent;
  }
  // Without replayed events there is nothing that could regress: equal.
  gate.replay_loss = std::isfinite(r.replay_loss_candidate) ? r.replay_loss_candidate : 0.0;
  gate.replay_loss_active = std::isfinite(r.replay_loss_parent) ? r.replay_loss_parent : 0.0;
  if (r.heldout_examples > 0) {
    gate.heldout_loss = r.heldout_loss_candidate;
    gate.heldout_loss_active = r.heldout_loss_parent;
  }
  gate.forgetting_kl = r.forgetting_kl;
  gate.active_version = in.parent_version;
  adapters::StoreGateInput(gate, cand.metrics, cand.training_config);
  cand.metrics["train.steps"] = double(r.steps);
  cand.metrics["train.tokens"] = double(r.tokens);
  cand.metrics["train.wall_seconds"] = r.wall_seconds;
  cand.metrics["train.peak_rss_mb"] = r.peak_rss_mb;
  if (std::isfinite(r.dpo_reward_accuracy)) cand.metrics["eval.dpo_reward_accuracy"] = r.dpo_reward_accuracy;
  ASSIGN_OR_RETURN(res.version, registry.Add(cand));
  res.label = registry.Label(res.version);
  replay::TrainingRecord rec;
  rec.adapter_version = res.version;
  rec.expected_cursor = batch.cursor_before;
  rec.new_cursor = batch.cursor_after;
  rec.event_ids = lineage;
  ASSIGN_OR_RETURN(replay::TrainingRecordResult recorded, store.RecordTraining(rec));
  if (retrain) std::remove(RetrainMarkerPath(checkpoint_path).c_str());  // relearned: the schedule is done
  if (recorded.events_missing > 0) {
    // Some events were erased while training: never publish a version that
    // still carries forgotten data.
    res.gate_summary = std::to_string(recorded.events_missing) + " training events were erased during training; not promoted";
    return res;
  }
  if (options.promote) {
    ASSIGN_OR_RETURN(adapters::PromoteResult pr, registry.Promote(res.version, gate, options.force));
    res.promoted = pr.promoted;
    res.gate_summary = pr.decision.Summary();
    if (!pr.promoted) {
      // A rejected window must not poison the later ones: its new events are
      // kept but not sampled or replayed until the candidate is promoted by
      // force (Store::Release).
      std::vector<std::string> ids;
      for (const auto& e : batch.new_events) ids.push_back(e.event.id);
      RETURN_IF_ERROR(store.Quarantine(ids).WithContext("quarantining the rejected window's events"));
      res.report.notes.push_back(std::to_string(ids.size()) + " event(s) of this rejected window quarantined");
    }
  }
  return res;
}

}  // namespace

}  // namespace attune::trainer
