// Reading and writing the registry's STATE file
// (attune.v1.AdapterRegistryStateFile wrapping an AdapterRegistryState).
#pragma once

#include <string>

#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/v1/adapter.pb.h"

namespace attune::adapters::internal {

inline constexpr uint32_t kStateFormatVersion = 1;

// NotFound when absent; DataLoss (naming `path`) when damaged; Unsupported
// when written by a newer format.
Result<v1::AdapterRegistryState> ReadStateFile(const std::string& path);

// Deterministic serialization: equal states give equal bytes.
std::string SerializeState(const v1::AdapterRegistryState& state);

// Replaces `path` atomically (WriteFileAtomic).
Status WriteStateFile(const std::string& path, const v1::AdapterRegistryState& state);

// Conversions between the stored enums and the public ones.
VersionState FromProto(v1::AdapterVersionRecord::State s);
v1::AdapterVersionRecord::State ToProto(VersionState s);
ActivationCause FromProto(v1::AdapterActivation::Cause c);
v1::AdapterActivation::Cause ToProto(ActivationCause c);

VersionInfo ToInfo(const v1::AdapterVersionRecord& r);
HistoryEntry ToEntry(const v1::AdapterActivation& a);

}  // namespace attune::adapters::internal
