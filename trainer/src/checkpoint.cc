#include "checkpoint.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "attune/core/file.h"
#include "attune/core/sha256.h"

namespace attune::trainer::internal {
namespace {

constexpr char kMagic[8] = {'A', 'T', 'T', 'U', 'N', 'E', 'C', 'K'};

void Append(std::string* body, nlohmann::json* list, const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.detach().contiguous();
  list->push_back({{"name", name}, {"shape", c.sizes().vec()}, {"dtype", c.scalar_type() == at::kFloat ? "f32" : "u8"},
                   {"offset", body->size()}, {"bytes", c.nbytes()}});
  body->append(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

nlohmann::json WindowToJson(const WindowIdentity& w) {
  return {{"new_event_ids", w.new_event_ids}, {"replay_event_ids", w.replay_event_ids},
          {"parent_version", w.parent_version}, {"cursor_before", w.cursor_before},
          {"cursor_after", w.cursor_after}};
}

WindowIdentity WindowFromJson(const nlohmann::json& j) {
  WindowIdentity w;
  w.new_event_ids = j.at("new_event_ids").get<std::vector<std::string>>();
  w.replay_event_ids = j.at("replay_event_ids").get<std::vector<std::string>>();
  w.parent_version = j.at("parent_version").get<std::string>();
  w.cursor_before = j.at("cursor_before").get<uint64_t>();
  w.cursor_after = j.at("cursor_after").get<uint64_t>();
  return w;
}

}  // namespace

bool SameWindow(const WindowIdentity& a, const WindowIdentity& b) {
  return a.new_event_ids == b.new_event_ids && a.replay_event_ids == b.replay_event_ids &&
         a.parent_version == b.parent_version && a.cursor_before == b.cursor_before && a.cursor_after == b.cursor_after;
}

Status SaveCheckpoint(const std::string& path, const CheckpointState& s) {
  std::string body;
  nlohmann::json tensors = nlohmann::json::array();
  for (size_t i = 0; i < s.params.size(); ++i) Append(&body, &tensors, "param." + std::to_string(i), s.params[i]);
  for (size_t i = 0; i < s.exp_avg.size(); ++i) Append(&body, &tensors, "exp_avg." + std::to_string(i), s.exp_avg[i]);
  for (size_t i = 0; i < s.exp_avg_sq.size(); ++i) Append(&body, &tensors, "exp_avg_sq." + std::to_string(i), s.exp_avg_sq[i]);
  for (size_t i = 0; i < s.best_params.size(); ++i) Append(&body, &tensors, "best." + std::to_string(i), s.best_params[i]);
  Append(&body, &tensors, "rng", s.rng_state);
  nlohmann::json h = {{"base_fingerprint", s.base_fingerprint}, {"config_key", s.config_key},
                      {"examples_key", s.examples_key}, {"window", WindowToJson(s.window)},
                      {"skipped_steps", s.skipped_steps}, {"clipped_steps", s.clipped_steps}, {"step", s.step}, {"epoch", s.epoch},
                      {"position", s.position}, {"tokens", s.tokens}, {"wall_seconds", s.wall_seconds},
                      {"loss_curve", s.loss_curve}, {"heldout_curve", s.heldout_curve}, {"best_step", s.best_step},
                      {"evals_since_best", s.evals_since_best},
                      {"best_loss", std::isfinite(s.best_loss) ? nlohmann::json(s.best_loss) : nlohmann::json(nullptr)},
                      {"tensors", tensors}, {"body_sha256", Sha256Hex(body)}};
  std::string header = h.dump();
  std::string out(kMagic, 8);
  uint32_t v = kCheckpointVersion;
  uint64_t n = header.size();
  out.append(reinterpret_cast<const char*>(&v), 4);
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += header;
  out += body;
  return WriteFileAtomic(path, out);
}

Result<CheckpointState> LoadCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(std::string data, ReadFile(path));
  auto bad = [&](const std::string& why) { return DataLossError("checkpoint '" + path + "' is corrupt: " + why); };
  if (data.size() < 20 || std::memcmp(data.data(), kMagic, 8) != 0) return bad("bad magic at offset 0");
  uint32_t v;
  uint64_t n;
  std::memcpy(&v, data.data() + 8, 4);
  std::memcpy(&n, data.data() + 12, 8);
  if (v > kCheckpointVersion) return UnsupportedError("checkpoint '" + path + "' has format version " + std::to_string(v) + ", newer than this build (" + std::to_string(kCheckpointVersion) + ")");
  if (n > data.size() - 20) return bad("header length runs past the end of the file");
  nlohmann::json h = nlohmann::json::parse(data.begin() + 20, data.begin() + 20 + int64_t(n), nullptr, false);
  if (h.is_discarded() || !h.is_object()) return bad("header is not JSON");
  std::string body = data.substr(20 + n);
  try {
    if (Sha256Hex(body) != h.at("body_sha256").get<std::string>()) return bad("body checksum mismatch (truncated or modified)");
    CheckpointState s;
    s.base_fingerprint = h.at("base_fingerprint");
    s.config_key = h.at("config_key");
    s.examples_key = h.at("examples_key");
    if (v >= 2) {
      s.window = WindowFromJson(h.at("window"));
      s.skipped_steps = h.at("skipped_steps");
      s.clipped_steps = h.at("clipped_steps");
    }
    s.step = h.at("step");
    s.epoch = h.at("epoch");
    s.position = h.at("position");
    s.tokens = h.at("tokens");
    s.wall_seconds = h.at("wall_seconds");
    s.loss_curve = h.at("loss_curve").get<std::vector<double>>();
    if (v >= 3) {
      s.heldout_curve = h.at("heldout_curve").get<std::vector<std::pair<int64_t, double>>>();
      s.best_step = h.at("best_step");
      s.evals_since_best = h.at("evals_since_best");
      if (!h.at("best_loss").is_null()) s.best_loss = h.at("best_loss");
    }
    for (const auto& t : h.at("tensors")) {
      const std::string name = t.at("name");
      const uint64_t off = t.at("offset"), bytes = t.at("bytes");
      if (off > body.size() || bytes > body.size() - off) return bad("tensor '" + name + "' runs past the end");
      auto shape = t.at("shape").get<std::vector<int64_t>>();
      const bool f32 = t.at("dtype") == "f32";
      // Checked before allocating, so a damaged shape cannot ask for terabytes.
      uint64_t count = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && count > body.size() / uint64_t(d))) return bad("tensor '" + name + "' has a bad shape");
        count *= uint64_t(d);
      }
      if (count * (f32 ? 4 : 1) != bytes) return bad("tensor '" + name + "' size does not match its shape");
      at::Tensor x = at::empty(shape, f32 ? at::kFloat : at::kByte);
      std::memcpy(x.data_ptr(), body.data() + off, bytes);
      if (name == "rng") s.rng_state = x;
      else if (name.rfind("param.", 0) == 0) s.params.push_back(x);
      else if (name.rfind("exp_avg_sq.", 0) == 0) s.exp_avg_sq.push_back(x);
      else if (name.rfind("exp_avg.", 0) == 0) s.exp_avg.push_back(x);
      else if (name.rfind("best.", 0) == 0) s.best_params.push_back(x);
      else return bad("unknown tensor '" + name + "'");
    }
    if (!s.rng_state.defined() || s.exp_avg.size() != s.params.size() || s.exp_avg_sq.size() != s.params.size()) {
      return bad("incomplete optimizer state");
    }
    if (!s.best_params.empty() && s.best_params.size() != s.params.size()) return bad("incomplete best adapter");
    return s;
  } catch (const std::exception& e) {
    return bad(std::string("header field missing or of the wrong type (") + e.what() + ")");
  }
}

}  // namespace attune::trainer::internal

namespace attune::trainer {

Result<WindowIdentity> ReadCheckpointWindow(const std::string& path) {
  if (!PathExists(path)) return NotFoundError("no checkpoint at '" + path + "'");
  ASSIGN_OR_RETURN(internal::CheckpointState s, internal::LoadCheckpoint(path));
  return s.window;
}

}  // namespace attune::trainer
