#include "json_options.h"

#include <limits>

#include "attune/trainer/lora_params.h"
#include "json_reader.h"

namespace attune::capi {

namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();

Status ReadGeneration(const nlohmann::json& obj, const std::string& path, runtime::GenerateOptions& g) {
  JsonReader r(obj, path);
  r.Int("max_tokens", g.max_tokens, 1, kMaxInt);
  r.Float("temperature", g.sampling.temperature);
  r.Int("top_k", g.sampling.top_k, 0, kMaxInt);
  r.Float("top_p", g.sampling.top_p);
  r.Float("repetition_penalty", g.sampling.repetition_penalty);
  r.Int("seed", g.sampling.seed, 0, std::numeric_limits<int64_t>::max());
  r.Strings("stop", g.stop);
  r.Bool("stop_at_eos", g.stop_at_eos);
  return r.Finish();
}

Status ReadGate(const nlohmann::json& obj, const std::string& path, adapters::GateOptions& g) {
  JsonReader r(obj, path);
  r.Number("min_new_loss_improvement", g.min_new_loss_improvement);
  r.Number("max_replay_regression", g.max_replay_regression);
  r.Number("replay_loss_floor", g.replay_loss_floor);
  r.Number("max_heldout_regression", g.max_heldout_regression);
  r.Number("max_forgetting_kl", g.max_forgetting_kl);
  RETURN_IF_ERROR(r.Finish());
  return adapters::ValidateGateOptions(g, path + ".");
}

Status ReadHealth(const nlohmann::json& obj, const std::string& path, adapters::HealthOptions& h) {
  JsonReader r(obj, path);
  r.Int("window", h.window, 1, kMaxInt);
  r.Number("max_down_rate_increase", h.max_down_rate_increase);
  r.Int("min_baseline_ratings", h.min_baseline_ratings, 0, kMaxInt);
  r.Number("fallback_baseline_rate", h.fallback_baseline_rate);
  return r.Finish();
}

// The trainer's own fields (LoRA shape, optimiser, budget, anti-forgetting).
// The reader checks types and what the fields can hold; the ranges are
// trainer::ValidateTrainerOptions', run after.
void ReadTrainer(JsonReader& r, trainer::TrainerOptions& t, std::string& targets) {
  r.Int("rank", t.lora.rank);
  r.Number("alpha", t.lora.alpha);
  r.Number("dropout", t.lora.dropout);
  r.Bool("rslora", t.lora.rslora);
  r.String("targets", targets);
  r.Number("learning_rate", t.adamw.lr);
  r.Number("weight_decay", t.adamw.weight_decay);
  r.Int("max_steps", t.max_steps);
  r.Number("max_minutes", t.max_minutes);
  r.Int("micro_batch_size", t.micro_batch_size);
  r.Int("grad_accum_steps", t.grad_accum_steps);
  r.Int("max_tokens_per_step", t.max_tokens_per_step);
  r.Int("max_seq_len", t.encode.max_seq_len);
  r.Bool("gradient_checkpointing", t.gradient_checkpointing);
  r.Number("graph_memory_mb", t.graph_memory_mb);
  r.String("base_products", t.base_products);
  r.Int("threads", t.threads);
  r.Number("max_memory_mb", t.max_memory_mb);
  r.Number("sft_weight", t.sft_weight);
  r.Number("dpo_weight", t.dpo_weight);
  r.Number("kto_weight", t.kto_weight);
  r.Number("dpo_beta", t.dpo_beta);
  r.Number("kto_beta", t.kto_beta);
  r.Number("l2_to_parent", t.l2_to_parent);
  r.Number("null_space_energy", t.null_space_energy);
  r.Int("seed", t.seed, 0, std::numeric_limits<int64_t>::max());
  r.Int("heldout_min_examples", t.heldout_min_examples);
  r.Int("heldout_every", t.heldout_every);
  r.Int("checkpoint_every_steps", t.checkpoint_every_steps);
  r.Int("replay_eval_examples", t.replay_eval_examples);
  r.Int("early_stopping_patience", t.early_stopping_patience);
  r.Int("eval_every_steps", t.eval_every_steps);
  r.Strings("forgetting_prompts", t.forgetting_prompts);
  r.Int("anchor_examples", t.anchor_examples);
  r.String("anchor_selection", t.anchor_selection);
  r.Strings("anchor_prompts", t.anchor_prompts);
  r.Number("anchor_weight", t.anchor_weight);
  r.Number("anchor_margin_boost", t.anchor_margin_boost);
  r.Bool("scope", t.scope);
  r.Int("anchor_max_tokens", t.anchor_max_tokens);
  r.Int("contrast_anchors", t.contrast_anchors);
  r.Number("neftune_alpha", t.neftune_alpha);
  r.Int("question_dropout_copies", t.question_dropout_copies);
  r.Number("question_dropout_p", t.question_dropout_p);
  r.Number("question_dropout_weight", t.question_dropout_weight);
  r.Int("question_dropout_min_words", t.question_dropout_min_words);
}

}  // namespace

Status ReadTrainingOptions(const nlohmann::json& obj, const std::string& path, trainer::TrainingRunOptions& o) {
  JsonReader r(obj, path);
  std::string targets;
  ReadTrainer(r, o.trainer, targets);
  r.Int("max_new_events", o.sample.max_new, 1, std::numeric_limits<int64_t>::max());
  r.Number("replay_ratio", o.sample.replay_ratio);
  r.Bool("promote", o.promote);
  r.Bool("force", o.force);
  RETURN_IF_ERROR(r.Finish());
  if (!targets.empty()) {
    auto mask = trainer::ParseTargets(targets);
    if (!mask.ok()) return mask.status().WithContext(r.PathOf("targets"));
    o.trainer.lora.targets = *mask;
  }
  return trainer::ValidateTrainerOptions(o.trainer, path + ".");
}

Result<AssistantOptions> ParseAssistantOptions(const std::string& text) {
  nlohmann::json obj;
  RETURN_IF_ERROR(ParseJson(text, "options", obj));
  if (!obj.is_object())
    return InvalidArgumentError("options: expected a JSON object, got " + std::string(obj.type_name()));
  AssistantOptions o;
  JsonReader r(obj, "options");
  r.String("data_dir", o.data_dir);
  r.String("model_path", o.model_path);
  r.String("chat_template", o.chat_template);
  r.Bool("background_training", o.background_training);
  r.Bool("serving_first", o.serving_first);
  int64_t poll_ms = o.poll_interval.count();
  r.Int("poll_interval_ms", poll_ms, 1, std::numeric_limits<int32_t>::max());
  o.poll_interval = std::chrono::milliseconds(poll_ms);
  r.Int("remembered_responses", o.remembered_responses, 1, kMaxInt);
  if (auto* g = r.Object("generation")) RETURN_IF_ERROR(ReadGeneration(*g, r.PathOf("generation"), o.generation));
  if (auto* t = r.Object("training")) RETURN_IF_ERROR(ReadTrainingOptions(*t, r.PathOf("training"), o.training));
  if (auto* g = r.Object("gate")) RETURN_IF_ERROR(ReadGate(*g, r.PathOf("gate"), o.gate));
  if (auto* h = r.Object("health")) RETURN_IF_ERROR(ReadHealth(*h, r.PathOf("health"), o.health));
  if (auto* w = r.Object("window")) {
    ASSIGN_OR_RETURN(o.window, trainer::ParseWindowPolicy(w->dump(), r.PathOf("window")));
  }
  RETURN_IF_ERROR(r.Finish());
  return o;
}

Result<std::vector<runtime::ChatMessage>> ParseMessages(const std::string& text) {
  nlohmann::json arr;
  RETURN_IF_ERROR(ParseJson(text, "messages", arr));
  if (!arr.is_array() || arr.empty())
    return InvalidArgumentError("messages: expected a non-empty JSON array of {role, content}");
  std::vector<runtime::ChatMessage> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string path = "messages[" + std::to_string(i) + "]";
    if (!arr[i].is_object()) return InvalidArgumentError(path + ": expected an object");
    runtime::ChatMessage m;
    JsonReader r(arr[i], path);
    r.String("role", m.role);
    r.String("content", m.content);
    RETURN_IF_ERROR(r.Finish());
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return InvalidArgumentError(path + ".role: '" + m.role + "' is not system, user or assistant");
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<trainer::DeviceState> ParseDeviceState(const std::string& text) {
  nlohmann::json obj;
  RETURN_IF_ERROR(ParseJson(text, "state", obj));
  if (!obj.is_object()) return InvalidArgumentError("state: expected a JSON object");
  JsonReader r(obj, "state");
  trainer::DeviceState s;
  bool power = false;
  double battery = -1, idle = -1, temp = -1000;
  r.Bool("external_power", power);
  r.Number("battery_percent", battery);
  r.Number("idle_minutes", idle);
  r.Number("temperature_c", temp);
  r.Int("local_hour", s.local_hour, 0, 23);
  RETURN_IF_ERROR(r.Finish());
  // Keys left out stay unknown (nullopt), which the window policy judges.
  if (obj.contains("external_power")) s.external_power = power;
  if (obj.contains("battery_percent")) s.battery_percent = battery;
  if (obj.contains("idle_minutes")) s.idle_minutes = idle;
  if (obj.contains("temperature_c")) s.temperature_c = temp;
  return s;
}

}  // namespace attune::capi
