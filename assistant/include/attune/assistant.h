// Assistant: the one object an assistant app embeds.
//
// It owns the shared base model (loaded once), the inference engine with its
// adapter slot, the replay store, the adapter registry, a health watch, and a
// background trainer thread:
//
//   Chat()        generates with the active adapter (a snapshot pinned per
//                 reply) and remembers the reply under a response id;
//   Record()      stores feedback; feedback that names a response id picks up
//                 that reply's context, text and adapter version by itself;
//                 ratings feed the health watch (thumbs-down streaks roll back);
//   background    when the window policy holds (device state from Linux sysfs
//                 or pushed by the host with SetDeviceState), trains one
//                 window, lets the gate decide, and publishes the promoted
//                 adapter into the engine while Chat() keeps serving;
//   TrainNow()    runs one window on the calling thread, ignoring the policy.
//
// Thread model: Chat, Record, SetDeviceState, GetStatus and Rollback may be
// called from any thread at any time. Training runs on one background thread
// (or the caller of TrainNow; never two at once); it checks for shutdown and
// for the window closing between micro-steps, writing a checkpoint when it
// stops early, and waits there while a Chat reply is being generated. The
// destructor stops the trainer (checkpoint), joins it and flushes the store.
//
// This header and everything it includes are free of LibTorch, RocksDB and
// protobuf types (tests/capi checks it), so an app compiles against it with
// none of those on its include path. Apps in other languages use the C ABI
// in attune/attune.h over the same object.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attune/adapters/gate.h"
#include "attune/adapters/health_options.h"
#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/feedback/event.h"
#include "attune/runtime/engine.h"
#include "attune/trainer/training_run_options.h"
#include "attune/trainer/window.h"

namespace attune {

struct AssistantOptions {
  std::string data_dir;     // Default: "" ($ATTUNE_HOME or ~/.local/share/attune)
  std::string model_path;   // Default: "" (the cached default model)
  std::string chat_template;  // "chatml" | "llama3" override. Default: "" (detect)
  // Keys and values of recent conversations, so a chat that resends its
  // history prefills only the new turn (runtime/prompt_cache.h); 0 disables.
  // Default: 64 MiB
  size_t prompt_cache_bytes = size_t{64} << 20;
  runtime::GenerateOptions generation;  // Default: greedy, 256 tokens
  trainer::TrainingRunOptions training;
  trainer::WindowPolicy window;
  adapters::HealthOptions health;
  adapters::GateOptions gate;  // promotion thresholds. Default: GateOptions{}
  // Run the background trainer thread. Default: true
  bool background_training = true;
  // How often the background thread checks the window. Default: 30 s
  std::chrono::milliseconds poll_interval{30000};
  // Device state: null = read Linux sysfs/procfs until SetDeviceState is
  // called, after which the pushed state is used. Default: null
  std::shared_ptr<trainer::DeviceStateSource> device;
  // Called with training progress from the training thread. Default: none
  std::function<void(const trainer::TrainProgress&)> on_progress;
  // Called after each training window with its result. Default: none
  std::function<void(const trainer::TrainingRunResult&)> on_trained;
  // Responses remembered for Record(); the oldest are forgotten. Default: 1024
  size_t remembered_responses = 1024;
  // Consulted together with the window policy (before a window starts, between
  // micro-steps, and in GetStatus): returns why the host keeps the window
  // closed (for example "outside the schedule 01:00-06:00"), or "" to allow.
  // Default: none (the policy alone decides)
  std::function<std::string()> host_window;
  // Serving comes first: while a Chat reply is being generated, a training
  // window waits before its set-up and between its micro-steps (the micro-step
  // under way finishes first), so replies get the cores. Default: true
  bool serving_first = true;
  // Called on the training thread before a window starts and between its
  // micro-steps. It may block to pause training (a server waits here while
  // requests are in flight) and returns true to stop the window now
  // (checkpointed, as when it closes); it must return promptly once the
  // Assistant is being destroyed. Default: none
  std::function<bool()> between_steps;
};

struct ChatReply {
  std::string text;
  std::string response_id;      // give it back to Record()
  std::string adapter_version;  // full id of the adapter that produced every token; "" = base
  std::string adapter_label;    // "v3", for display
  std::string finish_reason;
  int prompt_tokens = 0, completion_tokens = 0;
  int cached_prompt_tokens = 0;  // of prompt_tokens, restored from the prompt cache
};

struct AssistantStatus {
  bool window_open = false;
  std::vector<std::string> window_closed_because;
  bool training = false;
  trainer::TrainProgress progress;
  std::string active_version, active_label;
  std::optional<trainer::TrainingRunResult> last_run;
  uint64_t stored_events = 0, new_events = 0;
  // The prompt cache: lookups, hits, positions restored instead of computed,
  // and what it holds now.
  uint64_t prompt_cache_lookups = 0, prompt_cache_hits = 0, prompt_cache_reused_tokens = 0;
  uint64_t prompt_cache_bytes = 0;
};

// Export()'s result.
struct ExportResult {
  std::string version;  // full id exported
  std::string label;    // "v3"
  std::string format;   // "peft" | "gguf" | "bundle"
  std::string path;
};

// Import()'s result.
struct ImportResult {
  std::string version;  // its id in this device's registry
  std::string label;
  std::string format;            // detected: "peft" | "gguf" | "bundle"
  std::string signer_device_id;  // bundles only: the device that signed it
  bool promoted = false;         // promoted by force and now serving
};

// Sync()'s result (ids are full version ids).
struct SyncResult {
  std::string device_id;  // this device
  std::vector<std::string> exported, imported, merged, erased;
  std::vector<std::string> refused;  // "path: reason", looked at again next time
  std::string active_version;        // serving after the sync; "" = base
};

struct ForgetReport {
  uint64_t events_erased = 0;
  // Adapter versions trained on erased data (sorted).
  std::vector<std::string> affected_adapter_versions;
  // Versions erased because they were built from it (those above, their
  // descendants and merges), and whether the active one was among them:
  // then the newest version that never saw the data serves (or the base).
  std::vector<std::string> retired_versions;
  bool rolled_back = false;
  std::string active_version;  // serving now; "" = the base model
  // The next training window relearns the remaining feedback.
  bool retrain_scheduled = false;
};

class Assistant {
 public:
  // Opens (creating when missing) the data directory and loads the model.
  // Errors name the part that failed (model, store, registry).
  static Result<std::unique_ptr<Assistant>> Open(const AssistantOptions& options);
  ~Assistant();

  Result<ChatReply> Chat(const std::vector<runtime::ChatMessage>& messages,
                         const runtime::TextCallback& on_text = nullptr);
  // Stores `event`. With a non-empty `response_id` (from Chat) the event's
  // empty context, response, conversation and adapter version are filled in
  // from that reply; an unknown id is NotFound. Validation errors name the
  // field. Returns the stored event's id.
  Result<std::string> Record(feedback::Event event, const std::string& response_id = "");
  // For hosts (phones) that push power/idle/thermal state.
  void SetDeviceState(const trainer::DeviceState& state);
  // One training window now, on this thread (the policy is not consulted),
  // with `options` instead of AssistantOptions::training when given.
  Result<trainer::TrainingRunResult> TrainNow(const trainer::TrainingRunOptions* options = nullptr);
  AssistantStatus GetStatus() const;
  // Rolls back to the previous version (by hand) and publishes it.
  Result<std::string> Rollback();
  // Promotes a candidate by hand (through the gate, or forced: recorded in
  // the registry's history) and publishes it.
  Result<std::string> Promote(const std::string& version, bool force);
  // Erases every stored event of `user_id` (an unknown user erases
  // nothing), or one event by id (NotFound when unknown), and everything
  // learned from it (trainer/forget.h): adapter versions built from it are
  // retired (the active one rolled back first), the training checkpoint is
  // discarded, a retraining window is scheduled, and the other devices
  // learn of it at the next Sync. A running window is stopped first
  // (checkpointed, then discarded).
  Result<ForgetReport> ForgetUser(const std::string& user_id);
  Result<ForgetReport> ForgetEvent(const std::string& event_id);

  // --- Export, import and sync between the user's devices (docs/export.md) ---
  // Writes a registry version ("" = the active one, "vN", a full id or a
  // unique prefix) to `path` as `format`: "peft" (a directory PEFT's
  // from_pretrained reads), "gguf" (a GGUF-LoRA file for llama.cpp --lora) or
  // "bundle" (signed with this device's key, for Import/Sync on the user's
  // other devices). Nothing is left at `path` on failure.
  Result<ExportResult> Export(const std::string& version, const std::string& format, const std::string& path);
  // Adds the adapter at `path` (format detected) as a candidate. A bundle
  // must be signed by this device or a trusted one (TrustDevice) and verify;
  // PEFT and GGUF files must fit the loaded base model. With
  // `force_promote` it is promoted past the gate (recorded in the history)
  // and serves the next reply; otherwise Promote() it.
  Result<ImportResult> Import(const std::string& path, bool force_promote);
  // Exchanges adapters with the user's other devices through folder `dir`
  // (a synced folder, a USB stick): publishes this device's promoted
  // versions, imports trusted peers' as candidates, applies erasures.
  Result<SyncResult> Sync(const std::string& dir);
  // This device's public key line (created on first use), to give to the
  // user's other devices.
  Result<std::string> DeviceKey();
  // Trusts the device of a public key line; returns its device id.
  Result<std::string> TrustDevice(const std::string& public_key_line);

  const runtime::Engine& engine() const;

  // --- For services that serve chosen versions with per-request options ---
  struct PinnedAdapter {
    std::shared_ptr<const runtime::ActiveAdapter> snapshot;  // null: the base model
    std::string version;  // full id; "" for the base model
    std::string label;    // "vN" or "base"
  };
  // Pins a version before a request starts, so the caller knows which one
  // will answer: "" = the active one now, "base", "vN" or a full id.
  // NotFound names an unknown version. Snapshots are cached (a few).
  Result<PinnedAdapter> Pin(const std::string& which);
  // Chat with per-request generation options; `options.adapter` (from Pin)
  // chooses the version, else the active one is pinned as in Chat above.
  Result<ChatReply> Chat(const std::vector<runtime::ChatMessage>& messages, const runtime::GenerateOptions& options,
                         const runtime::TextCallback& on_text);
  // The registry (thread-safe) for listing versions; change it through
  // Promote/Rollback so the engine follows.
  const adapters::Registry& registry() const;

  struct Impl;

 private:
  explicit Assistant(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attune
