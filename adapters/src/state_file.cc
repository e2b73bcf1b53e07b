#include "state_file.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "attune/core/file.h"
#include "attune/core/sha256.h"

namespace attune::adapters::internal {
namespace {

std::string SerializeDeterministic(const google::protobuf::MessageLite& m) {
  std::string out;
  google::protobuf::io::StringOutputStream sos(&out);
  google::protobuf::io::CodedOutputStream cos(&sos);
  cos.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&cos);
  cos.Trim();
  return out;
}

Status CheckVersion(uint32_t v, const std::string& path, const char* what) {
  if (v == 0) return DataLossError(path + ": " + what + " has no format_version (damaged?)");
  if (v > kStateFormatVersion) {
    return UnsupportedError(path + ": " + what + " format_version " + std::to_string(v) +
                            " is newer than this build reads (" + std::to_string(kStateFormatVersion) +
                            ") (hint: upgrade attune)");
  }
  return Status::Ok();
}

}  // namespace

Result<v1::AdapterRegistryState> ReadStateFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  v1::AdapterRegistryStateFile file;
  if (!file.ParseFromString(bytes)) return DataLossError(path + ": not an adapter registry state file (damaged?)");
  RETURN_IF_ERROR(CheckVersion(file.format_version(), path, "state file"));
  if (Sha256Hex(file.state()) != file.state_sha256()) {
    return DataLossError(path + ": registry state checksum mismatch (damaged?)");
  }
  v1::AdapterRegistryState state;
  if (!state.ParseFromString(file.state())) return DataLossError(path + ": registry state does not parse");
  RETURN_IF_ERROR(CheckVersion(state.format_version(), path, "registry state"));
  return state;
}

std::string SerializeState(const v1::AdapterRegistryState& state) { return SerializeDeterministic(state); }

Status WriteStateFile(const std::string& path, const v1::AdapterRegistryState& state) {
  v1::AdapterRegistryStateFile file;
  file.set_format_version(kStateFormatVersion);
  file.set_state(SerializeDeterministic(state));
  file.set_state_sha256(Sha256Hex(file.state()));
  return WriteFileAtomic(path, SerializeDeterministic(file));
}

VersionState FromProto(v1::AdapterVersionRecord::State s) {
  switch (s) {
    case v1::AdapterVersionRecord::ACTIVE:
      return VersionState::kActive;
    case v1::AdapterVersionRecord::RETIRED:
      return VersionState::kRetired;
    case v1::AdapterVersionRecord::REJECTED:
      return VersionState::kRejected;
    default:
      return VersionState::kCandidate;
  }
}

v1::AdapterVersionRecord::State ToProto(VersionState s) {
  switch (s) {
    case VersionState::kActive:
      return v1::AdapterVersionRecord::ACTIVE;
    case VersionState::kRetired:
      return v1::AdapterVersionRecord::RETIRED;
    case VersionState::kRejected:
      return v1::AdapterVersionRecord::REJECTED;
    case VersionState::kCandidate:
      break;
  }
  return v1::AdapterVersionRecord::CANDIDATE;
}

ActivationCause FromProto(v1::AdapterActivation::Cause c) {
  switch (c) {
    case v1::AdapterActivation::FORCE:
      return ActivationCause::kForce;
    case v1::AdapterActivation::ROLLBACK_MANUAL:
      return ActivationCause::kRollbackManual;
    case v1::AdapterActivation::ROLLBACK_NAN:
      return ActivationCause::kRollbackNan;
    case v1::AdapterActivation::ROLLBACK_THUMBS_DOWN:
      return ActivationCause::kRollbackThumbsDown;
    case v1::AdapterActivation::ROLLBACK_ERASURE:
      return ActivationCause::kRollbackErasure;
    default:
      return ActivationCause::kPromote;
  }
}

v1::AdapterActivation::Cause ToProto(ActivationCause c) {
  switch (c) {
    case ActivationCause::kForce:
      return v1::AdapterActivation::FORCE;
    case ActivationCause::kRollbackManual:
      return v1::AdapterActivation::ROLLBACK_MANUAL;
    case ActivationCause::kRollbackNan:
      return v1::AdapterActivation::ROLLBACK_NAN;
    case ActivationCause::kRollbackThumbsDown:
      return v1::AdapterActivation::ROLLBACK_THUMBS_DOWN;
    case ActivationCause::kRollbackErasure:
      return v1::AdapterActivation::ROLLBACK_ERASURE;
    case ActivationCause::kPromote:
      break;
  }
  return v1::AdapterActivation::PROMOTE;
}

VersionInfo ToInfo(const v1::AdapterVersionRecord& r) {
  VersionInfo v;
  v.id = r.id();
  v.seq = r.seq();
  v.state = FromProto(r.state());
  v.reason = r.reason();
  v.parent_version = r.parent_version();
  v.created_unix_ms = r.created_unix_ms();
  v.added_unix_ms = r.added_unix_ms();
  v.payload_bytes = r.payload_bytes();
  v.pinned = r.pinned();
  v.metrics.insert(r.metrics().begin(), r.metrics().end());
  v.rank = r.rank();
  for (const auto& t : r.targets()) {
    auto parsed = ParseLoraTarget(t);
    if (parsed.ok()) v.targets.push_back(*parsed);
  }
  v.base_fingerprint = r.base_fingerprint();
  return v;
}

HistoryEntry ToEntry(const v1::AdapterActivation& a) {
  HistoryEntry e;
  e.seq = a.seq();
  e.time_unix_ms = a.time_unix_ms();
  e.from_version = a.from_version();
  e.to_version = a.to_version();
  e.cause = FromProto(a.cause());
  e.note = a.note();
  return e;
}

}  // namespace attune::adapters::internal
