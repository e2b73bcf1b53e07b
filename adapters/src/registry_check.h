// Queries over the registry state, its consistency check and the GC rules.
// Pure functions of the state (and, for the check and GC, the files).
#pragma once

#include <set>
#include <string>

#include "attune/adapters/registry.h"
#include "attune/v1/adapter.pb.h"

namespace attune::adapters::internal {

const v1::AdapterVersionRecord* FindRecord(const v1::AdapterRegistryState& s, const std::string& id);
v1::AdapterVersionRecord* FindRecord(v1::AdapterRegistryState& s, const std::string& id);
bool IsDeleted(const v1::AdapterRegistryState& s, const std::string& id);
void EraseDeleted(v1::AdapterRegistryState& s, const std::string& id);

// "v3" for a known or deleted id; "none" for ""; else the short id.
std::string LabelOf(const v1::AdapterRegistryState& s, const std::string& id);

// Id, unique prefix (>= 4 hex chars) or "vN" → full id of a present version.
Result<std::string> ResolveVersion(const v1::AdapterRegistryState& s, const std::string& version);

// Whether `id` was ever activated (named as to_version in the history).
bool WasActive(const v1::AdapterRegistryState& s, const std::string& id);

// The most recent earlier active version that is retired, or "" (none).
std::string DefaultRollbackTarget(const v1::AdapterRegistryState& s);

// Versions GC must keep, by the rules in registry.h (without extra_keep).
std::set<std::string> GcKeepSet(const v1::AdapterRegistryState& s, int keep_last, int keep_history);

// Points at the repair command; appended to messages about a damaged or
// missing STATE.
inline constexpr char kRepairHint[] =
    " (hint: `attune adapters repair` rebuilds STATE from the payloads, each of which carries its own manifest)";

// Payload files (*.adapter, not temporaries) in `payload_dir`.
size_t CountPayloadFiles(const std::string& payload_dir);

// Fills `r` (seq left as is) for `adapter` as a new candidate.
void FillCandidate(const Adapter& adapter, const std::string& id, uint64_t payload_bytes, int64_t now_ms,
                   v1::AdapterVersionRecord* r);

// Deletes what GC can account for and nothing else: payloads of versions
// that `s` records as deleted (left by an interrupted GC) and temporary
// files. A payload `s` does not know at all is kept: it may be the only copy
// of an adapter whose state was lost (repair adopts it).
Status RemoveUnreferenced(const v1::AdapterRegistryState& s, const std::string& dir, const std::string& payload_dir,
                          GcResult& result);

CheckReport CheckRegistry(const v1::AdapterRegistryState& s, const std::string& dir, const std::string& payload_dir,
                          bool verify_payloads);

}  // namespace attune::adapters::internal
