// Training checkpoints: everything needed to continue a run exactly.
//
// File layout (little-endian): "ATTUNECK" | u32 format version | u64 header
// length | JSON header | body. The header lists the tensors (name, shape,
// byte offset in the body) and holds the body's SHA-256; the body is the raw
// float32 data of the LoRA tensors and AdamW moments, then the dropout RNG
// state. Written with WriteFileAtomic: a crash leaves the old or the new one.
//
// Version 2 adds the window identity (event ids, parent version, replay
// cursors: see trainer.h WindowIdentity) and the skipped and clipped step
// counts. A
// version 1 file loads with an empty identity, which no window matches, so
// it is discarded rather than resumed. Version 3 adds early stopping's
// held-out measurements and its best adapter ("best.N" tensors); a version 2
// file loads with none.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/trainer/trainer.h"

namespace attune::trainer::internal {

inline constexpr uint32_t kCheckpointVersion = 3;

struct CheckpointState {
  std::string base_fingerprint;
  std::string config_key;    // options that shape the state
  std::string examples_key;  // which examples, in which split
  WindowIdentity window;
  int64_t step = 0, epoch = 0, position = 0, tokens = 0, skipped_steps = 0, clipped_steps = 0;
  double wall_seconds = 0;
  std::vector<double> loss_curve;
  std::vector<at::Tensor> params, exp_avg, exp_avg_sq;
  at::Tensor rng_state;      // uint8, the CPU generator's state
  // Early stopping (version 3): the measurements so far and the best one's
  // adapter (empty before the first measurement).
  std::vector<std::pair<int64_t, double>> heldout_curve;
  int64_t best_step = 0, evals_since_best = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  std::vector<at::Tensor> best_params;
};

Status SaveCheckpoint(const std::string& path, const CheckpointState& state);
// DataLoss (naming the file) for a truncated/corrupt file, Unsupported for a
// newer format version.
Result<CheckpointState> LoadCheckpoint(const std::string& path);

bool SameWindow(const WindowIdentity& a, const WindowIdentity& b);

}  // namespace attune::trainer::internal
