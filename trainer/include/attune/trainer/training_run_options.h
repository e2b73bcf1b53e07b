// Options and result of one training window (training_run.h), in a plain
// header (no LibTorch, RocksDB or protobuf types) for app-facing options.
#pragma once

#include <string>

#include "attune/feedback/example.h"
#include "attune/replay/sample_options.h"
#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

struct TrainingRunOptions {
  TrainerOptions trainer;
  // New events per window and the replay mix. Default: max_new 256,
  // replay_ratio 2 (two old events per new one).
  replay::SampleOptions sample;
  feedback::ExampleOptions examples;
  // Train on no event that newer feedback of the same user superseded (a
  // different answer to the same question, feedback/supersede.h), new or
  // replayed. Default: true
  bool drop_superseded = true;
  bool promote = true;  // submit the candidate to the gate. Default: true
  bool force = false;   // promote even if the gate says no (recorded). Default: false
};

struct TrainingRunResult {
  bool trained = false;        // false: nothing new to learn (see skipped_reason)
  std::string skipped_reason;
  bool completed = false;      // false: stopped early; the checkpoint resumes it
  TrainReport report;
  std::string version;         // full id of the candidate in the registry
  std::string label;           // "vN"
  bool promoted = false;
  std::string gate_summary;    // "passed" or the failed rules
};

}  // namespace attune::trainer
