// Configuration of `attune serve`: one TOML file (docs/serve.md lists every
// key), overridden by command-line flags. Every key is validated: an unknown
// key, a wrong type or a value out of range is InvalidArgument naming the
// file and the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attune/adapters/gate.h"
#include "attune/core/result.h"
#include "attune/service/schedule.h"

namespace attune::service {

struct ServerConfig {
  std::string host = "127.0.0.1";  // Default: 127.0.0.1 (loopback only)
  int port = 8080;                  // Default: 8080
  // Listen on this Unix domain socket (created mode 0600) instead of
  // host:port; access is the file's permissions. Default: "" (TCP)
  std::string socket;
  // Bearer token file (mode 0600); required for a non-loopback host.
  // Default: "" (no authentication; loopback only)
  std::string api_key_file;
  int64_t max_body_bytes = 1 << 20;  // larger bodies get 413. Default: 1 MiB
  int max_messages = 256;            // messages per chat request. Default: 256
  int max_tokens_limit = 4096;       // cap on a request's max_tokens. Default: 4096
  int max_concurrent = 2;            // generations running at once. Default: 2
  int max_queue = 16;                // requests waiting for a slot; more get 503. Default: 16
  int retry_after_seconds = 1;       // Retry-After of a 503. Default: 1
};

struct ModelConfig {
  std::string path;           // Default: "" (the cached default model)
  std::string data_dir;       // Default: "" ($ATTUNE_HOME or ~/.local/share/attune)
  std::string chat_template;  // "chatml" | "llama3". Default: "" (detect)
  int default_max_tokens = 256;  // when a request gives none. Default: 256
  // Prompt (prefix KV) cache for multi-turn chats, keyed by the adapter
  // snapshot as well as the tokens; 0 disables. Default: 64
  int64_t prompt_cache_mb = 64;
};

struct TrainingConfig {
  bool background = true;         // train in windows on a background thread. Default: true
  std::string schedule;           // "HH:MM-HH:MM" local time; "" = any time. Default: ""
  double quiet_seconds = 2.0;     // serving quiet this long before training resumes. Default: 2
  double poll_seconds = 30;       // how often the window is checked. Default: 30
  int64_t max_steps = 60;         // optimizer steps per window. Default: 60
  double max_minutes = 0;         // wall-clock cap per window; 0 = none. Default: 0
  // Device-state policy (trainer::WindowPolicy).
  bool require_external_power = true;  // Default: true
  double min_battery_percent = 50;     // Default: 50
  double min_idle_minutes = 5;         // Default: 5
  double max_temperature_c = 45;       // Default: 45
  int64_t min_new_events = 1;          // Default: 1
  std::string unknown = "allow";       // "allow" | "deny" an unreadable condition. Default: allow
};

// LoRA trainer knobs (trainer::TrainerOptions); defaults are the trainer's.
struct TrainerConfig {
  int64_t rank = 16;                // Default: 16
  double alpha = 32;                // Default: 32
  double dropout = 0.05;            // Default: 0.05
  double learning_rate = 1e-3;      // Default: 1e-3
  int64_t micro_batch_size = 0;     // 0 = the largest that fits. Default: 0
  int64_t grad_accum_steps = 2;     // Default: 2
  int64_t max_seq_len = 256;        // Default: 256
  // MB for the graphs of the top layers that checkpointing does not
  // recompute (trainer_options.h); 0 = every layer recomputed. Default: 0
  double graph_memory_mb = 0;
  int64_t anchor_examples = 32;     // anti-forgetting anchors. Default: 32
  int64_t anchor_max_tokens = 48;   // Default: 48
  // "first" | "nearest" (trainer_options.h). Default: "nearest"
  std::string anchor_selection = "nearest";
  // The questions a window teaches asked about no one, distilled like the
  // anchors (trainer_options.h); 0 = off. Default: 0
  int64_t contrast_anchors = 0;
  // The null-space constraint on LoRA A (trainer_options.h), in [0, 1);
  // 0 = off. Default: 0
  double null_space_energy = 0;
  // Word dropout on the user's questions (trainer_options.h): this many
  // more copies of each taught question of min_words words or more with
  // some words dropped, 0 = off; p in (0, 1); weight > 0; min_words in
  // [3, 1000]. Defaults: 0, 0.3, 0.5, 6
  int64_t question_dropout_copies = 0;
  double question_dropout_p = 0.3;
  double question_dropout_weight = 0.5;
  int64_t question_dropout_min_words = 6;
  // "auto" | "fp32" | "bf16": the frozen base's products (trainer_options.h).
  // Default: "auto" (bf16 where the CPU has AVX512-BF16 or AMX)
  std::string base_products = "auto";
  // Cores training computes on; 0 = all (trainer_options.h). Default: 0
  int64_t threads = 0;
  std::vector<std::string> forgetting_prompts;  // Default: none (the built-in set)
  std::vector<std::string> anchor_prompts;      // Default: none (the built-in pool)
};

struct ServiceConfig {
  ServerConfig server;
  ModelConfig model;
  TrainingConfig training;
  TrainerConfig trainer;
  adapters::GateOptions gate;  // [gate]: the promotion gate's thresholds
};

// Parses TOML text; `where` names the file in errors.
Result<ServiceConfig> ParseServiceConfig(const std::string& toml_text, const std::string& where);
// Reads and parses `path`.
Result<ServiceConfig> LoadServiceConfig(const std::string& path);
// Checks cross-field rules (ranges, schedule syntax, auth for non-loopback
// hosts); run after flags are applied.
Status ValidateServiceConfig(const ServiceConfig& config);

bool IsLoopbackHost(const std::string& host);

}  // namespace attune::service
