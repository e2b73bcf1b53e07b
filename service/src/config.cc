#include "attune/service/config.h"

#include <arpa/inet.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include "attune/core/file.h"
#include "attune/trainer/trainer_options.h"

namespace attune::service {

namespace {

// One key's reader: takes the TOML node, writes the field, or fails with a
// message (the caller adds file and key).
using Reader = std::function<bool(const toml::node&, std::string* error)>;

Reader Str(std::string* out) {
  return [out](const toml::node& n, std::string* err) {
    if (!n.is_string()) return *err = "must be a string", false;
    *out = *n.value<std::string>();
    return true;
  };
}
Reader Bool(bool* out) {
  return [out](const toml::node& n, std::string* err) {
    if (!n.is_boolean()) return *err = "must be true or false", false;
    *out = *n.value<bool>();
    return true;
  };
}
template <typename T>
Reader Int(T* out) {
  return [out](const toml::node& n, std::string* err) {
    if (!n.is_integer()) return *err = "must be an integer", false;
    const int64_t v = *n.value<int64_t>();
    if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max())) {
      return *err = "is out of range (" + std::to_string(v) + ")", false;
    }
    *out = T(v);
    return true;
  };
}
Reader Num(double* out) {
  return [out](const toml::node& n, std::string* err) {
    if (!n.is_number()) return *err = "must be a number", false;
    *out = *n.value<double>();
    return true;
  };
}

Reader Strings(std::vector<std::string>* out) {
  return [out](const toml::node& n, std::string* err) {
    const toml::array* a = n.as_array();
    if (!a) return *err = "must be an array of strings", false;
    out->clear();
    for (const auto& x : *a) {
      if (!x.is_string()) return *err = "must be an array of strings", false;
      out->push_back(*x.value<std::string>());
    }
    return true;
  };
}

std::map<std::string, std::map<std::string, Reader>> Readers(ServiceConfig& c) {
  auto& tr = c.trainer;
  auto& g = c.gate;
  auto& s = c.server;
  auto& m = c.model;
  auto& t = c.training;
  return {
      {"server",
       {{"host", Str(&s.host)},
        {"port", Int(&s.port)},
        {"socket", Str(&s.socket)},
        {"api_key_file", Str(&s.api_key_file)},
        {"max_body_bytes", Int(&s.max_body_bytes)},
        {"max_messages", Int(&s.max_messages)},
        {"max_tokens_limit", Int(&s.max_tokens_limit)},
        {"max_concurrent", Int(&s.max_concurrent)},
        {"max_queue", Int(&s.max_queue)},
        {"retry_after_seconds", Int(&s.retry_after_seconds)}}},
      {"model",
       {{"path", Str(&m.path)},
        {"data_dir", Str(&m.data_dir)},
        {"chat_template", Str(&m.chat_template)},
        {"default_max_tokens", Int(&m.default_max_tokens)},
        {"prompt_cache_mb", Int(&m.prompt_cache_mb)}}},
      {"training",
       {{"background", Bool(&t.background)},
        {"schedule", Str(&t.schedule)},
        {"quiet_seconds", Num(&t.quiet_seconds)},
        {"poll_seconds", Num(&t.poll_seconds)},
        {"max_steps", Int(&tr.max_steps)},
        {"max_minutes", Num(&tr.max_minutes)},
        {"require_external_power", Bool(&t.require_external_power)},
        {"min_battery_percent", Num(&t.min_battery_percent)},
        {"min_idle_minutes", Num(&t.min_idle_minutes)},
        {"max_temperature_c", Num(&t.max_temperature_c)},
        {"min_new_events", Int(&t.min_new_events)},
        {"unknown", Str(&t.unknown)}}},
      {"trainer",
       {{"rank", Int(&tr.lora.rank)},
        {"alpha", Num(&tr.lora.alpha)},
        {"dropout", Num(&tr.lora.dropout)},
        {"learning_rate", Num(&tr.adamw.lr)},
        {"micro_batch_size", Int(&tr.micro_batch_size)},
        {"grad_accum_steps", Int(&tr.grad_accum_steps)},
        {"max_seq_len", Int(&tr.encode.max_seq_len)},
        {"graph_memory_mb", Num(&tr.graph_memory_mb)},
        {"replay_eval_examples", Int(&tr.replay_eval_examples)},
        {"anchor_examples", Int(&tr.anchor_examples)},
        {"anchor_max_tokens", Int(&tr.anchor_max_tokens)},
        {"anchor_selection", Str(&tr.anchor_selection)},
        {"anchor_margin_boost", Num(&tr.anchor_margin_boost)},
        {"scope", Bool(&tr.scope)},
        {"contrast_anchors", Int(&tr.contrast_anchors)},
        {"null_space_energy", Num(&tr.null_space_energy)},
        {"question_dropout_copies", Int(&tr.question_dropout_copies)},
        {"question_dropout_p", Num(&tr.question_dropout_p)},
        {"question_dropout_weight", Num(&tr.question_dropout_weight)},
        {"question_dropout_min_words", Int(&tr.question_dropout_min_words)},
        {"base_products", Str(&tr.base_products)},
        {"threads", Int(&tr.threads)},
        {"forgetting_prompts", Strings(&tr.forgetting_prompts)},
        {"anchor_prompts", Strings(&tr.anchor_prompts)}}},
      {"gate",
       {{"min_new_loss_improvement", Num(&g.min_new_loss_improvement)},
        {"max_replay_regression", Num(&g.max_replay_regression)},
        {"replay_loss_floor", Num(&g.replay_loss_floor)},
        {"max_heldout_regression", Num(&g.max_heldout_regression)},
        {"max_forgetting_kl", Num(&g.max_forgetting_kl)}}},
  };
}

Status Range(bool ok, const std::string& key, const std::string& rule) {
  return ok ? Status::Ok() : InvalidArgumentError(key + " must be " + rule);
}

}  // namespace

Result<ServiceConfig> ParseServiceConfig(const std::string& toml_text, const std::string& where) {
  toml::table root;
  try {
    root = toml::parse(toml_text, where);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << where << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    return InvalidArgumentError(msg.str());
  }
  ServiceConfig c;
  auto readers = Readers(c);
  for (const auto& [section_key, section] : root) {
    std::string name(section_key.str());
    auto r = readers.find(name);
    if (r == readers.end()) {
      return InvalidArgumentError(where + ": unknown section [" + name + "] (hint: server, model, training, trainer or gate)");
    }
    if (!section.is_table()) return InvalidArgumentError(where + ": '" + name + "' must be a [table]");
    for (const auto& [k, node] : *section.as_table()) {
      std::string key = name + "." + std::string(k.str());
      auto f = r->second.find(std::string(k.str()));
      if (f == r->second.end()) {
        return InvalidArgumentError(where + ": unknown key '" + key + "' (docs/serve.md lists every key)");
      }
      std::string error;
      if (!f->second(node, &error)) return InvalidArgumentError(where + ": '" + key + "' " + error);
    }
  }
  Status st = ValidateServiceConfig(c);
  if (!st.ok()) return st.WithContext(where);
  return c;
}

Result<ServiceConfig> LoadServiceConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status().WithContext("config");
  return ParseServiceConfig(*text, path);
}

Status ValidateServiceConfig(const ServiceConfig& c) {
  const auto& s = c.server;
  const auto& t = c.training;
  RETURN_IF_ERROR(Range(s.port >= 0 && s.port <= 65535, "server.port", "in 0..65535 (0 picks a free port)"));
  RETURN_IF_ERROR(Range(s.max_body_bytes >= 1024, "server.max_body_bytes", ">= 1024"));
  RETURN_IF_ERROR(Range(s.max_messages >= 1, "server.max_messages", ">= 1"));
  RETURN_IF_ERROR(Range(s.max_tokens_limit >= 1, "server.max_tokens_limit", ">= 1"));
  RETURN_IF_ERROR(Range(s.max_concurrent >= 1 && s.max_concurrent <= 64, "server.max_concurrent", "in 1..64"));
  RETURN_IF_ERROR(Range(s.max_queue >= 0 && s.max_queue <= 4096, "server.max_queue", "in 0..4096"));
  RETURN_IF_ERROR(Range(s.retry_after_seconds >= 1, "server.retry_after_seconds", ">= 1"));
  RETURN_IF_ERROR(Range(c.model.prompt_cache_mb >= 0 && c.model.prompt_cache_mb <= 65536, "model.prompt_cache_mb",
                        "in 0..65536"));
  RETURN_IF_ERROR(Range(c.model.default_max_tokens >= 1 && c.model.default_max_tokens <= s.max_tokens_limit,
                        "model.default_max_tokens", "in 1..server.max_tokens_limit"));
  RETURN_IF_ERROR(Range(c.model.chat_template.empty() || c.model.chat_template == "chatml" ||
                            c.model.chat_template == "llama3",
                        "model.chat_template", "\"chatml\", \"llama3\" or \"\""));
  RETURN_IF_ERROR(Range(t.quiet_seconds >= 0, "training.quiet_seconds", ">= 0"));
  RETURN_IF_ERROR(Range(t.poll_seconds > 0, "training.poll_seconds", "> 0"));
  // [training]'s keys of the trainer's options, named as the file names them.
  RETURN_IF_ERROR(Range(c.trainer.max_steps >= 1, "training.max_steps", ">= 1"));
  RETURN_IF_ERROR(
      Range(c.trainer.max_minutes >= 0 && std::isfinite(c.trainer.max_minutes), "training.max_minutes", "a finite number >= 0"));
  RETURN_IF_ERROR(Range(t.min_battery_percent >= 0 && t.min_battery_percent <= 100, "training.min_battery_percent",
                        "in 0..100"));
  RETURN_IF_ERROR(Range(t.min_idle_minutes >= 0, "training.min_idle_minutes", ">= 0"));
  RETURN_IF_ERROR(Range(t.min_new_events >= 0, "training.min_new_events", ">= 0"));
  RETURN_IF_ERROR(Range(t.unknown == "allow" || t.unknown == "deny", "training.unknown", "\"allow\" or \"deny\""));
  RETURN_IF_ERROR(trainer::ValidateTrainerOptions(c.trainer, "trainer."));
  RETURN_IF_ERROR(adapters::ValidateGateOptions(c.gate, "gate."));
  auto sched = Schedule::Parse(t.schedule);
  if (!sched.ok()) return sched.status().WithContext("training.schedule");
  // sockaddr_un::sun_path holds 108 bytes with the terminating NUL.
  RETURN_IF_ERROR(Range(s.socket.size() < 108, "server.socket", "a path shorter than 108 bytes"));
  if (s.socket.empty() && !IsLoopbackHost(s.host) && s.api_key_file.empty()) {
    return InvalidArgumentError("server.host '" + s.host +
                                "' is not loopback: an API key is required (hint: --api-key-file FILE, mode 0600)");
  }
  return Status::Ok();
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

}  // namespace attune::service
