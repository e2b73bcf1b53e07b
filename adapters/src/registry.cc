#include "attune/adapters/registry.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/core/log.h"
#include "lock_file.h"
#include "registry_check.h"
#include "state_file.h"

namespace attune::adapters {

using internal::ToProto;
using State = v1::AdapterRegistryState;
using Record = v1::AdapterVersionRecord;

struct Registry::Impl {
  RegistryOptions options;
  std::string dir, state_path, payload_dir;
  mutable std::mutex mu;
  State state;
  CheckReport report;

  int64_t Now() const {
    if (options.clock) return options.clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::string PayloadPath(const std::string& id) const { return payload_dir + "/" + id + ".adapter"; }
  Status Writable() const {
    if (options.read_only) return FailedPreconditionError("adapter registry '" + dir + "' is opened read-only");
    return Status::Ok();
  }
  // Starts a mutation: takes the LOCK file and re-reads STATE, so that the
  // change applies to the latest state of any process. The caller holds mu.
  Result<internal::LockFile> BeginWrite() {
    RETURN_IF_ERROR(Writable());
    ASSIGN_OR_RETURN(internal::LockFile lock, internal::LockFile::Acquire(dir + "/LOCK", options.lock_timeout_ms));
    ASSIGN_OR_RETURN(state, internal::ReadStateFile(state_path));
    return lock;
  }
  // Makes `next` the durable state, or leaves everything as it was.
  Status Commit(State next) {
    RETURN_IF_ERROR(internal::WriteStateFile(state_path, next));
    state = std::move(next);
    return Status::Ok();
  }
  Result<std::string> Resolve(const std::string& v) const { return internal::ResolveVersion(state, v); }
  Result<Adapter> LoadVerified(const std::string& id) const { return ReadPayloadFile(PayloadPath(id), id); }
  Status CheckBase(const Adapter& a, const std::string& id) const {
    if (!options.base_model) return Status::Ok();
    return a.CheckCompatible(*options.base_model).WithContext("adapter " + internal::LabelOf(state, id));
  }
  // Makes `to` ("" = none) the active version in `s`: the one it replaces
  // gets `old_state` and `old_reason`, and the history records `cause`.
  void Activate(State& s, const std::string& to, ActivationCause cause, const std::string& note,
                Record::State old_state, const std::string& old_reason) const {
    const std::string from = s.active_version();
    if (Record* old = internal::FindRecord(s, from)) {
      old->set_state(old_state);
      old->set_reason(old_reason);
    }
    if (Record* r = internal::FindRecord(s, to)) {
      r->set_state(Record::ACTIVE);
      r->set_reason("");
    }
    s.set_active_version(to);
    v1::AdapterActivation* h = s.add_history();
    h->set_seq(static_cast<uint64_t>(s.history_size()));
    h->set_time_unix_ms(Now());
    h->set_from_version(from);
    h->set_to_version(to);
    h->set_cause(ToProto(cause));
    h->set_note(note);
  }
  // The report to gate on: `input`, else the one stored in the adapter.
  // Aborted when it was measured against another active version than now.
  Result<GateInput> GateInputFor(const Adapter& adapter, const std::optional<GateInput>& input,
                                 const std::string& label) const {
    GateInput in;
    if (input) {
      in = *input;
    } else {
      auto stored = GateInputFromMetrics(adapter.metrics, adapter.training_config);
      if (!stored.ok()) return stored.status().WithContext(label);
      in = std::move(stored).value();
    }
    if (in.active_version != state.active_version()) {
      return AbortedError(label + ": evaluated against " + internal::LabelOf(state, in.active_version) + ", but " +
                          internal::LabelOf(state, state.active_version()) + " is active now (hint: evaluate again)");
    }
    return in;
  }
};

Registry::Registry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Registry::~Registry() = default;

Result<std::unique_ptr<Registry>> Registry::Open(const RegistryOptions& options, const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->dir = dir;
  impl->state_path = dir + "/STATE";
  impl->payload_dir = dir + "/payloads";
  if (!options.read_only) {
    if (!options.create_if_missing && !PathExists(dir)) return NotFoundError("no adapter registry at '" + dir + "'");
    RETURN_IF_ERROR(MakeDirs(impl->payload_dir));
  }
  // Creating STATE is a mutation: under the lock, so that two processes
  // opening a new registry at once do not both write one.
  internal::LockFile lock;
  if (!options.read_only && !PathExists(impl->state_path)) {
    ASSIGN_OR_RETURN(lock, internal::LockFile::Acquire(dir + "/LOCK", options.lock_timeout_ms));
  }
  auto state = internal::ReadStateFile(impl->state_path);
  if (state.ok()) {
    impl->state = std::move(state).value();
  } else if (state.status().code() != StatusCode::kNotFound) {
    return state.status().code() == StatusCode::kDataLoss
               ? DataLossError(state.status().message() + std::string(internal::kRepairHint))
               : state.status();
  } else if (size_t n = internal::CountPayloadFiles(impl->payload_dir); n > 0) {
    // Payloads without the state that names them: the state was lost. A
    // new empty state here would make every payload an orphan for gc.
    return DataLossError("adapter registry '" + dir + "': STATE is missing but " + std::to_string(n) +
                         " payload files are present" + internal::kRepairHint);
  } else if (!options.create_if_missing && !options.read_only) {
    return NotFoundError("no adapter registry state at '" + impl->state_path + "'");
  } else {
    impl->state.set_format_version(internal::kStateFormatVersion);
    impl->state.set_next_seq(1);
    if (!options.read_only) RETURN_IF_ERROR(internal::WriteStateFile(impl->state_path, impl->state));
  }
  impl->report = internal::CheckRegistry(impl->state, dir, impl->payload_dir, options.paranoid_checks);
  for (const auto& e : impl->report.errors) ATTUNE_LOG(kWarning, "adapter registry " << dir << ": " << e);
  return std::unique_ptr<Registry>(new Registry(std::move(impl)));
}

const std::string& Registry::dir() const { return impl_->dir; }

Result<bool> Registry::Refresh() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(auto fresh, internal::ReadStateFile(impl_->state_path));
  const bool changed = internal::SerializeState(fresh) != internal::SerializeState(impl_->state);
  impl_->state = std::move(fresh);
  return changed;
}

CheckReport Registry::report() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->report;
}

CheckReport Registry::Check(bool verify_payloads) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->report = internal::CheckRegistry(impl_->state, impl_->dir, impl_->payload_dir, verify_payloads);
  return impl_->report;
}

Result<std::string> Registry::Add(const Adapter& adapter) {
  RETURN_IF_ERROR(impl_->Writable());
  ASSIGN_OR_RETURN(std::string bytes, EncodePayload(adapter));
  const std::string id = PayloadVersionId(bytes);
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl_->BeginWrite());
  if (internal::FindRecord(impl_->state, id) != nullptr) return id;
  if (impl_->options.base_model) {
    RETURN_IF_ERROR(adapter.CheckCompatible(*impl_->options.base_model).WithContext("adapter " + ShortVersion(id)));
  }
  if (!adapter.parent_version.empty() && internal::FindRecord(impl_->state, adapter.parent_version) == nullptr &&
      !internal::IsDeleted(impl_->state, adapter.parent_version)) {
    return FailedPreconditionError("adapter " + ShortVersion(id) + ": parent version " + adapter.parent_version +
                                   " is not in the registry");
  }
  // The payload first, the state last: a crash in between leaves an orphan
  // file that Open reports and Gc removes, never a version without payload.
  RETURN_IF_ERROR(WriteFileAtomic(impl_->PayloadPath(id), bytes));
  State next = impl_->state;
  Record* r = next.add_versions();
  r->set_id(id);
  r->set_seq(next.next_seq());
  next.set_next_seq(next.next_seq() + 1);
  internal::FillCandidate(adapter, id, bytes.size(), impl_->Now(), r);
  internal::EraseDeleted(next, id);
  RETURN_IF_ERROR(impl_->Commit(std::move(next)));
  return id;
}

Result<std::string> Registry::AddFile(const std::string& path) {
  ASSIGN_OR_RETURN(Adapter a, ReadPayloadFile(path));
  return Add(a);
}

Result<GateDecision> Registry::Evaluate(const std::string& version, const GateInput& input) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  RETURN_IF_ERROR(impl_->Resolve(version).status());
  return EvaluateGate(impl_->options.gate, input);
}

Result<PromoteResult> Registry::Promote(const std::string& version, const std::optional<GateInput>& input, bool force) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl_->BeginWrite());
  ASSIGN_OR_RETURN(std::string id, impl_->Resolve(version));
  const Record* rec = internal::FindRecord(impl_->state, id);
  const std::string label = internal::LabelOf(impl_->state, id);
  if (rec->state() == Record::ACTIVE) return FailedPreconditionError(label + " is already active");
  if (!force && rec->state() != Record::CANDIDATE) {
    return FailedPreconditionError(label + " is " + std::string(VersionStateName(internal::FromProto(rec->state()))) +
                                   ", not a candidate (hint: rollback to return to an earlier version, or force)");
  }
  ASSIGN_OR_RETURN(Adapter adapter, impl_->LoadVerified(id));
  RETURN_IF_ERROR(impl_->CheckBase(adapter, id));
  PromoteResult result;
  result.forced = force;
  result.decision.passed = true;
  State next = impl_->state;
  if (!force) {
    ASSIGN_OR_RETURN(GateInput in, impl_->GateInputFor(adapter, input, label));
    result.decision = EvaluateGate(impl_->options.gate, in);
    if (!result.decision.passed) {
      Record* r = internal::FindRecord(next, id);
      r->set_state(Record::REJECTED);
      r->set_reason("gate: " + result.decision.Summary());
      RETURN_IF_ERROR(impl_->Commit(std::move(next)));
      return result;
    }
  }
  impl_->Activate(next, id, force ? ActivationCause::kForce : ActivationCause::kPromote,
                  force ? "forced past the gate" : "gate passed", Record::RETIRED, "replaced by " + label);
  RETURN_IF_ERROR(impl_->Commit(std::move(next)));
  result.promoted = true;
  return result;
}

Result<std::string> Registry::Rollback(const RollbackRequest& request) {
  RETURN_IF_ERROR(impl_->Writable());
  if (request.cause == ActivationCause::kPromote || request.cause == ActivationCause::kForce) {
    return InvalidArgumentError("rollback cause must be one of the rollback causes");
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl_->BeginWrite());
  const std::string active = impl_->state.active_version();
  if (request.expected_active && *request.expected_active != active) {
    return AbortedError("rollback skipped: " + internal::LabelOf(impl_->state, *request.expected_active) +
                        " is no longer the active version");
  }
  if (active.empty()) return FailedPreconditionError("no adapter is active, nothing to roll back");
  std::string target;
  if (request.target && request.target->empty()) {
    target = "";  // the bare base model
  } else if (request.target) {
    ASSIGN_OR_RETURN(target, impl_->Resolve(*request.target));
    const std::string label = internal::LabelOf(impl_->state, target);
    if (target == active) return FailedPreconditionError(label + " is already active");
    if (!internal::WasActive(impl_->state, target)) {
      return FailedPreconditionError(label + " was never active (hint: promote it instead)");
    }
  } else {
    target = internal::DefaultRollbackTarget(impl_->state);
  }
  if (!target.empty()) {
    ASSIGN_OR_RETURN(Adapter adapter, impl_->LoadVerified(target));
    RETURN_IF_ERROR(impl_->CheckBase(adapter, target));
  }
  State next = impl_->state;
  impl_->Activate(next, target, request.cause, request.note, Record::REJECTED,
                  "rolled back (" + std::string(ActivationCauseName(request.cause)) + ")" +
                      (request.note.empty() ? "" : ": " + request.note));
  RETURN_IF_ERROR(impl_->Commit(std::move(next)));
  return target;
}

Status Registry::SetPinned(const std::string& version, bool pinned) {
  Impl& impl = *impl_;
  std::lock_guard<std::mutex> lock(impl.mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl.BeginWrite());
  ASSIGN_OR_RETURN(std::string id, impl.Resolve(version));
  State next = impl.state;
  Record* r = internal::FindRecord(next, id);
  if (r->pinned() == pinned) return Status::Ok();
  r->set_pinned(pinned);
  return impl.Commit(std::move(next));
}

Status Registry::Pin(const std::string& version) { return SetPinned(version, true); }
Status Registry::Unpin(const std::string& version) { return SetPinned(version, false); }

Result<GcResult> Registry::Gc(const std::set<std::string>& extra_keep) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl_->BeginWrite());
  std::set<std::string> keep = internal::GcKeepSet(impl_->state, impl_->options.keep_last, impl_->options.keep_history);
  for (const auto& v : extra_keep) {
    auto id = impl_->Resolve(v);
    if (id.ok()) keep.insert(*id);
  }
  GcResult result;
  State next = impl_->state;
  next.clear_versions();
  for (const Record& r : impl_->state.versions()) {
    if (keep.count(r.id())) {
      *next.add_versions() = r;
    } else {
      result.removed_versions.push_back(r.id());
      v1::AdapterDeletedVersion* d = next.add_deleted();
      d->set_id(r.id());
      d->set_seq(r.seq());
      d->set_deleted_unix_ms(impl_->Now());
    }
  }
  // The state first, the files after: a crash in between leaves orphans,
  // which the next Gc removes.
  if (!result.removed_versions.empty()) RETURN_IF_ERROR(impl_->Commit(std::move(next)));
  RETURN_IF_ERROR(internal::RemoveUnreferenced(impl_->state, impl_->dir, impl_->payload_dir, result));
  impl_->report = internal::CheckRegistry(impl_->state, impl_->dir, impl_->payload_dir, false);
  return result;
}

Result<std::string> Registry::Resolve(const std::string& version) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->Resolve(version);
}

std::vector<VersionInfo> Registry::List() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<VersionInfo> out;
  for (const Record& r : impl_->state.versions()) out.push_back(internal::ToInfo(r));
  return out;
}

Result<VersionInfo> Registry::Get(const std::string& version) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(std::string id, impl_->Resolve(version));
  return internal::ToInfo(*internal::FindRecord(impl_->state, id));
}

std::string Registry::Active() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->state.active_version();
}

std::vector<HistoryEntry> Registry::History() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<HistoryEntry> out;
  for (const auto& h : impl_->state.history()) out.push_back(internal::ToEntry(h));
  return out;
}

std::string Registry::Label(const std::string& id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return internal::LabelOf(impl_->state, id);
}

Result<Adapter> Registry::Load(const std::string& version) const {
  std::string id;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    ASSIGN_OR_RETURN(id, impl_->Resolve(version));
  }
  // Payloads are immutable: reading needs no lock.
  auto adapter = impl_->LoadVerified(id);
  if (adapter.ok() || adapter.status().code() != StatusCode::kNotFound) return adapter;
  // Gone: removed by another process's Gc since, or lost. Only the current
  // STATE can tell which.
  auto now = internal::ReadStateFile(impl_->state_path);
  if (now.ok() && internal::FindRecord(*now, id) != nullptr) {
    return DataLossError(internal::LabelOf(*now, id) + ": payload '" + impl_->PayloadPath(id) +
                         "' is missing, though STATE lists it" + internal::kRepairHint);
  }
  return adapter;
}

std::string Registry::PayloadPath(const std::string& id) const { return impl_->PayloadPath(id); }

std::string_view VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kCandidate:
      return "candidate";
    case VersionState::kActive:
      return "active";
    case VersionState::kRetired:
      return "retired";
    case VersionState::kRejected:
      return "rejected";
  }
  return "?";
}

std::string_view ActivationCauseName(ActivationCause cause) {
  switch (cause) {
    case ActivationCause::kPromote:
      return "promote";
    case ActivationCause::kForce:
      return "force";
    case ActivationCause::kRollbackManual:
      return "rollback-manual";
    case ActivationCause::kRollbackNan:
      return "rollback-nan";
    case ActivationCause::kRollbackThumbsDown:
      return "rollback-thumbs-down";
    case ActivationCause::kRollbackErasure:
      return "rollback-erasure";
  }
  return "?";
}

// Erasure (see registry.h): the same state-first, files-after order as Gc.
Status Registry::Erase(const std::string& version, const std::string& reason) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ASSIGN_OR_RETURN(internal::LockFile file_lock, impl_->BeginWrite());
  ASSIGN_OR_RETURN(std::string id, impl_->Resolve(version));
  if (impl_->state.active_version() == id) {
    return FailedPreconditionError("adapter " + internal::LabelOf(impl_->state, id) +
                                   " is active; roll back before erasing it");
  }
  State next = impl_->state;
  next.clear_versions();
  for (const Record& r : impl_->state.versions()) {
    if (r.id() != id) {
      *next.add_versions() = r;
      continue;
    }
    v1::AdapterDeletedVersion* d = next.add_deleted();
    d->set_id(r.id());
    d->set_seq(r.seq());
    d->set_deleted_unix_ms(impl_->Now());
    d->set_reason(reason);
  }
  RETURN_IF_ERROR(impl_->Commit(std::move(next)));
  GcResult ignored;
  RETURN_IF_ERROR(internal::RemoveUnreferenced(impl_->state, impl_->dir, impl_->payload_dir, ignored));
  impl_->report = internal::CheckRegistry(impl_->state, impl_->dir, impl_->payload_dir, false);
  return Status::Ok();
}

std::vector<Registry::ErasedVersion> Registry::Erased() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<ErasedVersion> out;
  for (const auto& d : impl_->state.deleted()) {
    if (d.reason().empty()) continue;
    out.push_back({d.id(), "v" + std::to_string(d.seq()), d.reason(), d.deleted_unix_ms()});
  }
  return out;
}

}  // namespace attune::adapters
