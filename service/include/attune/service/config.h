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
#include "attune/trainer/trainer_options.h"

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
  // Device-state policy (trainer::WindowPolicy).
  bool require_external_power = true;  // Default: true
  double min_battery_percent = 50;     // Default: 50
  double min_idle_minutes = 5;         // Default: 5
  double max_temperature_c = 45;       // Default: 45
  int64_t min_new_events = 1;          // Default: 1
  std::string unknown = "allow";       // "allow" | "deny" an unreadable condition. Default: allow
};

struct ServiceConfig {
  ServerConfig server;
  ModelConfig model;
  TrainingConfig training;
  // [trainer]: the LoRA trainer's options, the trainer's defaults
  // (trainer_options.h); docs/serve.md lists the keys the file sets.
  // [training]'s max_steps and max_minutes are its max_steps and max_minutes.
  trainer::TrainerOptions trainer;
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
