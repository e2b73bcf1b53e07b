// Sync between a user's devices through a shared folder (a synced folder, a
// USB stick): `attune sync DIR`.
//
// Layout of DIR: one folder per device, named by its device id, written only
// by that device:
//   DIR/<device-id>/<version-id>.bundle     signed bundles (bundle.h)
//   DIR/<device-id>/<sha256>.tombstone      signed erasure notices
// Every file is created under a temporary name and renamed into place, no
// file is ever edited, and readers only look at the final names, so two
// devices may sync at once. A file that does not verify (half-copied by the
// folder-sync tool, tampered with, signed by an unknown or revoked key) is
// refused and looked at again next time; nothing of it is imported.
//
// One Sync call, holding <state_dir>/LOCK:
//  1. publishes this device's promoted versions (active or retired, not
//     imported) and its pending tombstones (RecordErasure);
//  2. applies every verified tombstone: each named version, its local
//     descendants and merges that used it are rolled back when active and
//     erased from the registry; erased versions are never imported again and
//     this device's own bundles of them are deleted from DIR;
//  3. imports the verified bundles of trusted peers that it has not seen, in
//     creation order, as candidates with their lineage (a parent unknown here
//     is kept in training_config["sync.parent_version"]);
//  4. with `merge_diverged`, when an imported version and the local active
//     version were both trained from the same parent P, adds one candidate
//     merging them exactly: ΔW = ΔW_local + ΔW_peer − ΔW_P (merge.h, cat).
// State (what was imported from where, what was erased) lives in
// <state_dir>/state.json, replaced atomically. Running Sync again with
// nothing new changes nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/export/keys.h"

namespace attune::export_ {

struct SyncOptions {
  // When set, bundles for another base model are refused. When unset, a
  // bundle whose base fingerprint matches no local version is refused (as
  // long as the registry has any). Default: unset
  std::optional<adapters::BaseModelInfo> base_model;
  // Merge diverged versions into one candidate (step 4). Default: true
  bool merge_diverged = true;
};

struct SyncReport {
  struct Imported {
    std::string origin_id;  // id on the device that trained it
    std::string local_id;   // id here (differs when the parent was unknown)
    std::string device_id;
    std::string label;  // on the origin device
  };
  struct Refused {
    std::string path;
    std::string reason;
  };
  std::vector<std::string> exported;        // version ids written to DIR
  std::vector<std::string> tombstones_out;  // tombstone files written to DIR
  std::vector<Imported> imported;
  std::vector<std::string> merged;  // candidates added by step 4
  std::vector<std::string> erased;  // local ids rolled back / erased
  std::vector<std::string> notes;   // what happened to each erased version
  std::vector<Refused> refused;
};

// Runs one sync (see above). Errors (IoError, Unavailable for a busy LOCK,
// DataLoss for a damaged state.json) stop it; refused files do not.
Result<SyncReport> Sync(adapters::Registry& registry, const KeyStore& keys, const std::string& dir,
                        const std::string& state_dir, const SyncOptions& options);

// Records that `versions` (full ids) were built from erased data: writes a
// signed tombstone to <state_dir>/outbox/, which the next Sync publishes and
// applies. Returns the tombstone's path. No-op ("" returned) when empty.
Result<std::string> RecordErasure(const KeyStore& keys, const std::string& state_dir,
                                  const std::vector<std::string>& versions, const std::string& reason);

}  // namespace attune::export_
