// Registry: every adapter version on disk, which one serves, and the history
// of how it came to serve.
//
// Layout of `dir` (normally <data_dir>/adapters):
//   LOCK                        flock'd for the duration of each mutation;
//                               holds the last locker's pid
//   STATE                       attune.v1.AdapterRegistryStateFile, replaced
//                               atomically (temp + fsync + rename + fsync dir)
//   payloads/<id>.adapter       immutable payloads, named by their SHA-256
//
// Every mutation writes the payloads it needs first and switches STATE last,
// in one atomic rename; GC switches STATE before deleting files. So a crash
// at any instant leaves the old state or the new one, and the active version
// named by STATE (or none) has a complete, verified payload.
//
// Versions are named by their id (64 hex), any unique prefix of it of at
// least 4 chars, or their sequence label "v7".
//
// States: candidate (added, not yet judged), active (exactly one or none),
// retired (was active, replaced by a promotion), rejected (failed the gate,
// or rolled back from; the reason is kept).
//
// Thread safety: all methods may be called from several threads; they are
// serialised by an internal mutex. Across processes, any number of Registry
// objects may be open on one directory (a long-running assistant and the
// `attune adapters` command, say): each mutation takes the LOCK file,
// re-reads STATE, applies its change and writes STATE before unlocking, so
// mutations from different processes are serialised and none is lost. A
// mutation that cannot get the lock within `lock_timeout_ms` fails with
// Unavailable. Queries answer from the state as of the last Open, Refresh or
// mutation of this object; Refresh() picks up other processes' changes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/adapters/gate.h"
#include "attune/core/result.h"

namespace attune::adapters {

enum class VersionState { kCandidate, kActive, kRetired, kRejected };
std::string_view VersionStateName(VersionState state);  // "candidate", ...

enum class ActivationCause { kPromote, kForce, kRollbackManual, kRollbackNan, kRollbackThumbsDown, kRollbackErasure };
// "promote", "force", "rollback-manual", "rollback-nan", "rollback-thumbs-down",
// "rollback-erasure".
std::string_view ActivationCauseName(ActivationCause cause);

struct VersionInfo {
  std::string id;    // SHA-256 hex of the payload
  uint64_t seq = 0;  // label "v<seq>"
  VersionState state = VersionState::kCandidate;
  std::string reason;  // for rejected / retired
  std::string parent_version;
  int64_t created_unix_ms = 0;
  int64_t added_unix_ms = 0;
  uint64_t payload_bytes = 0;
  bool pinned = false;
  std::map<std::string, double> metrics;
  int64_t rank = 0;
  std::vector<LoraTarget> targets;
  std::string base_fingerprint;

  std::string label() const { return "v" + std::to_string(seq); }
};

struct HistoryEntry {
  uint64_t seq = 0;
  int64_t time_unix_ms = 0;
  std::string from_version;  // empty: none was active
  std::string to_version;    // empty: none is active afterwards
  ActivationCause cause = ActivationCause::kPromote;
  std::string note;
};

struct RegistryOptions {
  // Promotion thresholds (see gate.h). Default: GateOptions{}
  GateOptions gate;
  // GC keeps the `keep_last` most recently added versions. Default: 5
  int keep_last = 5;
  // GC keeps the versions named by the newest `keep_history` history entries
  // (so recent rollbacks stay possible). Default: 16
  int keep_history = 16;
  // Create `dir` and an empty STATE when absent. Default: true
  bool create_if_missing = true;
  // Never lock or write; every mutation fails with FailedPrecondition. For
  // tools that only look. Default: false
  bool read_only = false;
  // How long a mutation waits for another process's mutation to finish
  // before failing with Unavailable. Default: 1000 ms
  int lock_timeout_ms = 1000;
  // Open re-hashes every payload instead of checking presence and size.
  // Default: false
  bool paranoid_checks = false;
  // When set, Add and activations refuse adapters that do not fit this base
  // model (Adapter::CheckCompatible). Default: unset
  std::optional<BaseModelInfo> base_model;
  // Milliseconds since the Unix epoch (a seam for tests). Default: system clock
  std::function<int64_t()> clock;
};

// What a consistency check found. Open reports; it does not repair.
struct CheckReport {
  // Problems that make a version unusable (missing or damaged payloads, a
  // state that names unknown versions).
  std::vector<std::string> errors;
  // Harmless leftovers of an interrupted operation (payloads no version
  // names, temporary files); Gc removes them.
  std::vector<std::string> warnings;
  bool ok() const { return errors.empty(); }
};

struct PromoteResult {
  bool promoted = false;
  GateDecision decision;  // the gate's verdict (passed when forced)
  bool forced = false;
};

struct RollbackRequest {
  // The version to return to ("" = the bare base model); unset: the most
  // recent earlier active version that is retired (not rejected), or none
  // (the bare base model) when there is no such version.
  std::optional<std::string> target;
  ActivationCause cause = ActivationCause::kRollbackManual;  // a rollback cause
  std::string note;
  // When set, the rollback happens only if this is still the active version
  // (Aborted otherwise): an automatic rollback must not undo a newer
  // promotion that it did not judge.
  std::optional<std::string> expected_active;
};

struct GcResult {
  std::vector<std::string> removed_versions;
  std::vector<std::string> removed_files;  // orphans and temporaries
  uint64_t bytes_freed = 0;
};

// What Registry::Repair found and did.
struct RepairResult {
  // STATE was missing or damaged and was rebuilt from the payloads. What
  // only STATE knew is then lost: which version was active, the states
  // (every version comes back as a candidate), pins, gate verdicts and the
  // activation history.
  bool state_rebuilt = false;
  // Why STATE had to be rebuilt (the error reading it); "" otherwise.
  std::string damage;
  // Where the damaged STATE was moved ("" when it was missing).
  std::string state_backup;
  // Ids of the payloads now listed as candidates (all of them when STATE
  // was rebuilt; otherwise the valid payloads STATE did not name).
  std::vector<std::string> adopted;
  // "path: reason" for payloads that do not verify; left where they are.
  std::vector<std::string> damaged_payloads;
};

class Registry {
 public:
  // Rebuilds what can be rebuilt, never deleting anything: when STATE is
  // missing or damaged, moves it aside (STATE.damaged-<ms>) and writes a new
  // one listing every valid payload as a candidate (each payload carries its
  // own manifest); when STATE is fine, adopts valid payloads it does not
  // name. Under the LOCK. Errors: NotFound (no registry at `dir`),
  // Unsupported (STATE from a newer format: left alone), Unavailable,
  // IoError. Never runs by itself.
  static Result<RepairResult> Repair(const RegistryOptions& options, const std::string& dir);

  // Opens (or creates) the registry in `dir`. DataLoss: STATE is damaged
  // (the message names the file), or missing while payloads are present
  // (then nothing is created; see Repair). Unsupported: STATE is from a newer format.
  // Unavailable: creating it needed the lock and another process held it.
  // Inconsistencies between STATE and the payloads do not fail Open; see
  // report().
  static Result<std::unique_ptr<Registry>> Open(const RegistryOptions& options, const std::string& dir);

  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  const std::string& dir() const;

  // Re-reads STATE, so that queries see other processes' mutations. Returns
  // whether anything changed. On failure (DataLoss, Unsupported, IoError)
  // the previous in-memory state is kept.
  Result<bool> Refresh();

  // The consistency report computed by Open (or by the last Check()).
  CheckReport report() const;
  // Recomputes the report; `verify_payloads` re-hashes every payload.
  CheckReport Check(bool verify_payloads);

  // Stores `adapter` as a candidate; returns its id. Adding an adapter that
  // is already present returns its id and changes nothing. InvalidArgument:
  // the adapter is invalid. FailedPrecondition: it does not fit
  // options.base_model, or its parent is unknown. On failure nothing changes.
  Result<std::string> Add(const Adapter& adapter);
  // Reads, verifies and adds a payload file (DecodePayload's errors).
  Result<std::string> AddFile(const std::string& path);

  // The gate's verdict for `version` on `input`; changes nothing.
  Result<GateDecision> Evaluate(const std::string& version, const GateInput& input);

  // Promotes a candidate through the gate. `input` unset: the report stored in
  // the adapter's metrics (GateInputFromMetrics). If the gate fails, the
  // version becomes rejected with the reasons and promoted is false (this is
  // not an error). `force` skips the gate, may promote any non-active version
  // and is recorded in the history. Errors (nothing changes): NotFound;
  // FailedPrecondition (not a candidate and no force, no stored report, does
  // not fit the base model); Aborted (input.active_version is stale);
  // DataLoss (payload damaged).
  Result<PromoteResult> Promote(const std::string& version, const std::optional<GateInput>& input, bool force);

  // Switches back (see RollbackRequest). The version rolled back from becomes
  // rejected with the cause as reason. Returns the new active id ("" for
  // none). Errors (nothing changes): NotFound; FailedPrecondition (no active
  // version, a target that was never active or is the active one);
  // Aborted (expected_active mismatch); DataLoss (target payload damaged).
  Result<std::string> Rollback(const RollbackRequest& request);

  // Pinned versions survive GC. NotFound for an unknown version.
  Status Pin(const std::string& version);
  Status Unpin(const std::string& version);

  // Deletes the versions (records and payloads) that are not: active,
  // pinned, among the `keep_last` newest, named by the newest `keep_history`
  // history entries, the default rollback target, or in `extra_keep` (ids,
  // prefixes or labels: for instance the parent a training checkpoint
  // resumes from). Also removes temporary files and the payloads of versions
  // STATE records as deleted (left by an interrupted Gc). A payload STATE
  // does not know is never deleted (see Repair).
  // Deleted versions stay resolvable by Label() for the history.
  Result<GcResult> Gc(const std::set<std::string>& extra_keep = {});

  // Erasure: deletes one version's record and payload whatever its pins or
  // GC policy, for data a user asked to forget (an imported version named by
  // a peer's tombstone, say). The id stays resolvable by Label() like a
  // GC'd version, and `reason` (never the erased content) is kept with it
  // (Erased()). FailedPrecondition: it is the active version (roll back
  // first). NotFound: unknown. On failure nothing changes.
  Status Erase(const std::string& version, const std::string& reason = "");
  struct ErasedVersion {
    std::string id, label, reason;
    int64_t time_unix_ms = 0;
  };
  // Versions erased with a reason, oldest first.
  std::vector<ErasedVersion> Erased() const;

  // Resolves an id, unique id prefix (>= 4 chars) or label to a full id.
  // NotFound / InvalidArgument (ambiguous prefix).
  Result<std::string> Resolve(const std::string& version) const;

  // Versions in the order they were added.
  std::vector<VersionInfo> List() const;
  Result<VersionInfo> Get(const std::string& version) const;
  // The active version's id, or "" when none is.
  std::string Active() const;
  // Activation history, oldest first.
  std::vector<HistoryEntry> History() const;
  // "v3" for a known or deleted version id, else its short form.
  std::string Label(const std::string& id) const;

  // Reads and verifies the payload of `version`. DataLoss when damaged, or
  // absent while STATE still lists the version; NotFound when a concurrent
  // Gc removed it.
  Result<Adapter> Load(const std::string& version) const;
  // Path of the payload file of a full id (whether or not it exists).
  std::string PayloadPath(const std::string& id) const;

 private:
  struct Impl;
  explicit Registry(std::unique_ptr<Impl> impl);
  Status SetPinned(const std::string& version, bool pinned);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attune::adapters
