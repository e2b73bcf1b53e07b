#include "json_results.h"

namespace attune::capi {

nlohmann::json ReplyToJson(const ChatReply& r) {
  return {{"text", r.text},
          {"response_id", r.response_id},
          {"adapter_version", r.adapter_version},
          {"adapter_label", r.adapter_label},
          {"finish_reason", r.finish_reason}};
}

nlohmann::json TrainResultToJson(const trainer::TrainingRunResult& r) {
  // The report has its own JSON form (the CLI's `train --json` prints it).
  nlohmann::json report = nlohmann::json::parse(r.report.ToJson(), nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded()) report = nullptr;
  return {{"trained", r.trained},
          {"skipped_reason", r.skipped_reason},
          {"completed", r.completed},
          {"version", r.version},
          {"label", r.label},
          {"promoted", r.promoted},
          {"gate_summary", r.gate_summary},
          {"report", report}};
}

nlohmann::json StatusToJson(const AssistantStatus& s) {
  nlohmann::json progress = {{"step", s.progress.step},
                             {"max_steps", s.progress.max_steps},
                             {"loss", s.progress.loss},
                             {"tokens_per_second", s.progress.tokens_per_second},
                             {"eta_seconds", s.progress.eta_seconds}};
  return {{"window_open", s.window_open},
          {"window_closed_because", s.window_closed_because},
          {"training", s.training},
          {"progress", progress},
          {"active_version", s.active_version},
          {"active_label", s.active_label},
          {"stored_events", s.stored_events},
          {"new_events", s.new_events},
          {"last_run", s.last_run ? TrainResultToJson(*s.last_run) : nlohmann::json(nullptr)}};
}

nlohmann::json ForgetToJson(const ForgetReport& r) {
  return {{"events_erased", r.events_erased},         {"affected_adapter_versions", r.affected_adapter_versions},
          {"retired_versions", r.retired_versions},   {"rolled_back", r.rolled_back},
          {"active_version", r.active_version},       {"retrain_scheduled", r.retrain_scheduled}};
}

nlohmann::json ExportToJson(const ExportResult& r) {
  return {{"version", r.version}, {"label", r.label}, {"format", r.format}, {"path", r.path}};
}

nlohmann::json ImportToJson(const ImportResult& r) {
  return {{"version", r.version},
          {"label", r.label},
          {"format", r.format},
          {"signer_device_id", r.signer_device_id},
          {"promoted", r.promoted}};
}

nlohmann::json SyncToJson(const SyncResult& r) {
  return {{"device_id", r.device_id}, {"exported", r.exported}, {"imported", r.imported},
          {"merged", r.merged},       {"erased", r.erased},     {"refused", r.refused},
          {"active_version", r.active_version}};
}

std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace attune::capi
