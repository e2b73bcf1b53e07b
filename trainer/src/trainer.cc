#include "attune/trainer/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "attune/core/file.h"
#include "attune/core/process.h"
#include "attune/core/sha256.h"
#include "attune/runtime/generate.h"
#include "attune/runtime/linear_weight.h"
#include "anchors.h"
#include "question_dropout.h"
#include "null_space.h"
#include "checkpoint.h"

namespace attune::trainer {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// General-knowledge prompts for the forgetting KL: none of them is about a
// user, so an adapter that learned its user should barely move them.
const char* kForgettingPrompts[] = {
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "How many days are in a leap year?",
    "Write a short poem about autumn.",
    "What is 12 times 12?",
    "Name three primary colors.",
    "Who wrote Romeo and Juliet?",
    "What does a thermometer measure?",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Give me a tip for sleeping better.",
    "What is the boiling point of water at sea level?",
    "List the planets of the solar system.",
    "What is a prime number?",
    "How do I make a cup of tea?",
    "Summarize the plot of Cinderella in two sentences.",
};

// The base model's greedy answer (no adapter), up to max_tokens tokens;
// `*cut` tells whether it was cut off before the end of its turn.
std::string GenerateBaseAnswer(const runtime::Model& m, const std::string& prompt, int64_t max_tokens, bool* cut) {
  auto reply = runtime::GreedyReply(m, nullptr, prompt, int(max_tokens), cut);
  return reply.ok() ? *reply : "";
}

// The base model's answers depend only on the base and the prompt, so every
// training window of a process reuses them instead of generating them again.
std::string BaseAnswer(const runtime::Model& m, const std::string& prompt, int64_t max_tokens, bool* cut = nullptr) {
  static std::mutex mu;
  static std::map<std::string, std::pair<std::string, bool>> cache;
  const std::string key = m.fingerprint() + '\n' + std::to_string(max_tokens) + '\n' + prompt;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      if (cut) *cut = it->second.second;
      return it->second.first;
    }
  }
  bool was_cut = false;
  std::string answer = GenerateBaseAnswer(m, prompt, max_tokens, &was_cut);
  if (cut) *cut = was_cut;
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(key, std::make_pair(answer, was_cut));
  return answer;
}

// Seconds from t0 to now, for the report's phase times.
double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool Scores(const EncodedExample& e) {
  return e.objective != Objective::kDistill && (e.objective != Objective::kKto || e.desirable);
}

std::string ConfigKey(const TrainerOptions& o, int64_t mb) {
  nlohmann::json j = {{"rank", o.lora.rank},        {"alpha", o.lora.alpha},   {"dropout", o.lora.dropout},
                      {"rslora", o.lora.rslora},    {"targets", TargetsToString(o.lora.targets)},
                      {"lr", o.adamw.lr},           {"wd", o.adamw.weight_decay}, {"mb", mb},
                      {"accum", o.grad_accum_steps}, {"seq", o.encode.max_seq_len}, {"seed", o.seed},
                      {"budget", o.max_tokens_per_step}, {"ckpt", o.gradient_checkpointing},
                      {"weights", {o.sft_weight, o.dpo_weight, o.kto_weight, o.dpo_beta, o.kto_beta, o.l2_to_parent}}};
  // (Only when on: the checkpoints of runs without it keep their key.)
  if (o.early_stopping_patience > 0) j["early_stopping"] = {o.early_stopping_patience, o.eval_every_steps};
  if (o.null_space_energy > 0) j["null_space"] = o.null_space_energy;
  if (o.lr_schedule != "constant") j["lr_schedule"] = {o.lr_schedule, o.max_steps, o.warmup_steps};
  return j.dump();
}

int64_t PickMicroBatch(const runtime::Model& m, const TrainerOptions& o) {
  if (o.micro_batch_size > 0) return o.micro_batch_size;
  const auto& c = m.config();
  const double T = double(o.encode.max_seq_len);
  // Activation bytes per token of one layer (norms, projections, SwiGLU,
  // attention probabilities), and the output head on up to every token. The
  // head now runs a chunk of rows at a time (objective.cc), so its term
  // overestimates; it is kept so that the default micro-batch, and with it
  // the default windows' step size, stays what the learning settings were
  // measured with. It also covers what the checkpointed first pass keeps of
  // the MLP under bf16 products (4 bytes per token and intermediate unit per
  // layer, runtime::LayerKeep): SmolLM2 at 5 x 256 keeps 236 MB of those
  // against the head term's 755 MB, whose chunks take about 70.
  const double layer_tok = 4.0 * (12.0 * c.hidden + 6.0 * c.intermediate + 3.0 * c.n_heads * T);
  const double layers = o.gradient_checkpointing ? 4.0 * c.hidden * c.n_layers + layer_tok : layer_tok * c.n_layers;
  const double head = 12.0 * c.vocab_size;
  const double per_seq = T * (layers + head);
  return std::clamp<int64_t>(int64_t(o.max_memory_mb * 1024 * 1024 / per_seq), 1, 16);
}

// Global L2 norm of the gradients (0 when none is defined).
double GradNorm(const std::vector<at::Tensor>& params) {
  double sq = 0;
  for (const auto& p : params) {
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sq);
}

void ScaleGrads(const std::vector<at::Tensor>& params, double factor) {
  at::NoGradGuard ng;
  for (const auto& p : params) {
    if (p.grad().defined()) p.mutable_grad().mul_(factor);
  }
}

// Builds LoRA weights holding `values` (LoraParams order) for evaluation.
runtime::LoraWeights WeightsOf(const runtime::Model& m, const LoraConfig& c, const std::vector<at::Tensor>& values) {
  LoraParams p = LoraParams::Init(m, c, 0);
  p.Assign(values).IgnoreError();  // shapes were checked when `values` was accepted
  return p.Weights(false);
}

}  // namespace

double ScheduledLr(const TrainerOptions& o, int64_t step) {
  if (o.warmup_steps > 0 && step < o.warmup_steps) return o.adamw.lr * double(step + 1) / double(o.warmup_steps + 1);
  if (o.lr_schedule != "linear") return o.adamw.lr;
  const int64_t decay_steps = std::max<int64_t>(1, o.max_steps - std::max<int64_t>(0, o.warmup_steps));
  const int64_t into = step - std::max<int64_t>(0, o.warmup_steps);
  return o.adamw.lr * std::max(0.0, double(decay_steps - into) / double(decay_steps));
}

std::string TrainReport::ToJson() const {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  nlohmann::json j = {{"completed", completed},
                      {"stop_reason", stop_reason},
                      {"steps", steps},
                      {"skipped_steps", skipped_steps},
                      {"clipped_steps", clipped_steps},
                      {"tokens", tokens},
                      {"padding_tokens", padding_tokens},
                      {"shared_prefix_tokens", shared_prefix_tokens},
                      {"micro_batch_size", micro_batch_size},
                      {"base_products", bf16_base ? "bf16" : "fp32"},
                      {"wall_seconds", wall_seconds},
                      {"tokens_per_second", tokens_per_second},
                      {"peak_rss_mb", peak_rss_mb},
                      {"phase_seconds",
                       {{"prepare", prepare_seconds}, {"parent", parent_seconds}, {"steps", steps_seconds},
                        {"candidate", candidate_seconds}}},
                      {"examples", {{"new", new_examples}, {"replay", replay_examples}, {"heldout", heldout_examples}, {"skipped", skipped_examples}}},
                      {"new_loss", {{"parent", num(new_loss_parent)}, {"candidate", num(new_loss_candidate)}}},
                      {"replay_loss", {{"parent", num(replay_loss_parent)}, {"candidate", num(replay_loss_candidate)}}},
                      {"heldout_loss", {{"parent", num(heldout_loss_parent)}, {"candidate", num(heldout_loss_candidate)}}},
                      {"dpo_reward_accuracy", num(dpo_reward_accuracy)},
                      {"unlikelihood", {{"parent", num(unlikelihood_parent)}, {"candidate", num(unlikelihood_candidate)}}},
                      {"dpo_loss", {{"parent", num(dpo_loss_parent)}, {"candidate", num(dpo_loss_candidate)}}},
                      {"objective_score",
                       {{"parent", num(objective_score_parent)}, {"candidate", num(objective_score_candidate)}}},
                      {"forgetting_kl", num(forgetting_kl)},
                      {"loss_curve", loss_curve},
                      {"kept_step", kept_step},
                      {"heldout_curve", heldout_curve},
                      {"notes", notes}};
  return j.dump();
}

Trainer::Trainer(std::shared_ptr<const runtime::Model> model, TrainerOptions options)
    : model_(std::move(model)), o_(std::move(options)) {}

double Trainer::MeanLoss(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora) const {
  std::vector<const Sequence*> seqs;
  for (const auto& e : examples) {
    if (Scores(e)) seqs.push_back(&e.chosen);
  }
  if (seqs.empty()) return kNaN;
  double nll = 0, tokens = 0;
  for (size_t i = 0; i < seqs.size(); i += 8) {
    std::vector<const Sequence*> chunk(seqs.begin() + int64_t(i), seqs.begin() + int64_t(std::min(seqs.size(), i + 8)));
    Batch b = MakeBatch(chunk);
    at::NoGradGuard ng;
    nll -= SequenceLogProbs(*model_, runtime::HiddenStates(*model_, lora, b.ids), b).sum().item<double>();
    tokens += b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>();
  }
  return nll / tokens;
}

double Trainer::EvalUnlikelihood(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora) const {
  double sum = 0;
  int64_t n = 0;
  at::NoGradGuard ng;
  for (const auto& e : examples) {
    if (e.objective != Objective::kKto || e.desirable) continue;
    Batch b = MakeBatch({&e.chosen});
    const double tokens = b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>();
    if (tokens <= 0) continue;
    const double mean_lp = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, lora, b.ids), b).item<double>() / tokens;
    sum += -std::log1p(-std::min(std::exp(mean_lp), 1.0 - 1e-12));
    ++n;
  }
  return n ? sum / double(n) : kNaN;
}

double Trainer::EvalDpoLoss(const std::vector<EncodedExample>& examples, const runtime::LoraWeights* lora,
                            double* reward_accuracy) const {
  double sum = 0;
  int64_t n = 0, right = 0;
  at::NoGradGuard ng;
  for (const auto& e : examples) {
    if (e.objective != Objective::kDpo) continue;
    Batch b = MakeBatch({&e.chosen, &e.rejected});
    at::Tensor ref = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, nullptr, b.ids), b);
    at::Tensor pol = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, lora, b.ids), b);
    const double margin = ((pol[0] - ref[0]) - (pol[1] - ref[1])).item<double>();
    right += margin > 0;
    const double z = o_.dpo_beta * margin;
    sum += z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));  // softplus(-z), stable
    ++n;
  }
  if (reward_accuracy) *reward_accuracy = n ? double(right) / double(n) : kNaN;
  return n ? sum / double(n) : kNaN;
}

double Trainer::ForgettingKl(const runtime::LoraWeights& lora) const {
  // The base model's own answers, teacher-forced: the KL is measured where it
  // matters, on the next-token distributions while answering.
  if (kl_sequences_.empty()) {
    std::vector<std::string> prompts = o_.forgetting_prompts;
    if (prompts.empty()) prompts.assign(std::begin(kForgettingPrompts), std::end(kForgettingPrompts));
    for (const auto& p : prompts) {
      auto a = runtime::AnswerIds(*model_, p, BaseAnswer(*model_, p, o_.anchor_max_tokens));
      if (a.ok()) kl_sequences_.push_back(std::move(*a));
    }
  }
  return runtime::MeanAnswerKl(*model_, lora, kl_sequences_);
}

// LibTorch reports failures by throwing; none of it may leave the trainer
// (it would end the assistant's thread with std::terminate).
Result<TrainOutcome> Trainer::Run(const TrainInput& input, const std::string& checkpoint_path,
                                  const std::function<bool()>& should_stop,
                                  const std::function<void(const TrainProgress&)>& progress) {
  // Every pass of the run computes the products the backward pass
  // differentiates (fp32 on dequantized tiles), no-grad ones included.
  runtime::ExactProducts exact;
  RETURN_IF_ERROR(ValidateTrainerOptions(o_, ""));
  const std::string& bp = o_.base_products;
  const bool bf16_base = bp == "bf16" || (bp == "auto" && runtime::CpuHasBf16());
  std::optional<runtime::ThreadsScope> threads;
  if (o_.threads > 0) threads.emplace(1, o_.threads);
  std::optional<runtime::Bf16Products> bf16;
  std::optional<runtime::LibTorchProductsThreads> bf16_threads;
  if (bf16_base) bf16.emplace(), bf16_threads.emplace();
  try {
    auto out = RunUnguarded(input, checkpoint_path, should_stop, progress);
    if (out.ok()) out->report.bf16_base = bf16_base;
    return out;
  } catch (const c10::Error& e) {
    return InternalError(std::string("training failed in LibTorch: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return UnavailableError("training ran out of memory (hint: lower max_memory_mb, micro_batch_size or max_seq_len)");
  } catch (const std::exception& e) {
    return InternalError(std::string("training failed: ") + e.what());
  }
}

namespace {

// One training window: what Trainer::RunUnguarded does, a step at a time.
// Prepare (encode, hold out, anchors, parameters), Resume (a checkpoint or a
// fresh seed), MeasureParent, Train (the steps), Finish (the candidate).
class WindowRun {
 public:
  WindowRun(const Trainer& trainer, const runtime::Model& m, const TrainerOptions& o, const std::string& checkpoint_path,
            const std::function<void(const TrainProgress&)>& progress)
      : trainer_(trainer), m_(m), o_(o), checkpoint_path_(checkpoint_path), progress_(progress) {}

  Status Prepare(const TrainInput& input);
  Status Resume();
  void MeasureParent();
  Status Train(const std::function<bool()>& should_stop);
  Result<TrainOutcome> Finish();

 private:
  enum class StepEnd { kTaken, kStopped, kNonFinite };

  void EncodeAll(const std::vector<feedback::Example>& in, std::vector<EncodedExample>* dst);
  void AddAnchors(const TrainInput& input);
  void AddQuestionDropout(const TrainInput& input);
  void MeasureNullSpace();
  std::vector<std::vector<size_t>> PlanOf(int64_t epoch) const;
  std::pair<std::vector<const EncodedExample*>, int64_t> NextMicro();
  double RunMicro(const std::vector<const EncodedExample*>& mbx, int64_t* padding, int64_t* shared);
  const at::Tensor& BaseOf(const EncodedExample& e);
  StepEnd Step(const std::function<bool()>& should_stop);
  Status Save(const internal::CheckpointState& s);
  // A window that ends (with or without a candidate) leaves no checkpoint.
  void RemoveCheckpoint() const {
    if (!checkpoint_path_.empty() && PathExists(checkpoint_path_)) std::remove(checkpoint_path_.c_str());
  }
  bool MeasureHeldout();
  double Elapsed() const { return SecondsSince(t_start_); }

  const Trainer& trainer_;
  const runtime::Model& m_;
  const TrainerOptions& o_;
  const std::string& checkpoint_path_;
  const std::function<void(const TrainProgress&)>& progress_;
  const Clock::time_point t_start_ = Clock::now();
  TrainOutcome out_;
  TrainReport& r_ = out_.report;
  std::vector<EncodedExample> fresh_, replay_, heldout_, train_;
  // The replayed examples the replay loss is measured on, before and after
  // (at most replay_eval_examples of replay_, evenly spaced).
  std::vector<EncodedExample> replay_measured_;
  std::optional<LoraParams> params_;
  std::optional<AdamW> opt_;
  std::optional<internal::NullSpace> null_space_;
  std::vector<at::Tensor> parent_values_;
  bool has_parent_ = false, early_stopping_ = false;
  int64_t mb_ = 1;
  internal::CheckpointState st_;
  at::Generator gen_ = at::detail::getDefaultCPUGenerator();
  std::vector<std::vector<size_t>> plan_;
  std::vector<at::Tensor> base_of_;  // BaseOf, by index in train_
  // The anchors drawn from the pool, prompt and base answer (AddAnchors):
  // with the pool's prompts, what the null-space measurement runs; not the
  // contrast anchors.
  std::vector<std::vector<int64_t>> pool_anchors_;
  // The fewest and most layers a micro-batch kept the graph of (graph_memory_mb).
  std::pair<size_t, size_t> graph_layers_seen_{SIZE_MAX, 0};
  double prior_seconds_ = 0;
};

// An example that cannot be trained is skipped with a reason.
void WindowRun::EncodeAll(const std::vector<feedback::Example>& in, std::vector<EncodedExample>* dst) {
  for (const auto& e : in) {
    auto enc = Encode(m_, e, o_.encode);
    if (!enc.ok()) {
      ++r_.skipped_examples;
      r_.notes.push_back("skipped: " + enc.status().message());
      continue;
    }
    if (enc->truncated) r_.notes.push_back("truncated to " + std::to_string(o_.encode.max_seq_len) + " tokens: example '" + e.event_id + "'");
    dst->push_back(std::move(*enc));
  }
}

void WindowRun::AddAnchors(const TrainInput& input) {
  if ((o_.anchor_examples <= 0 && o_.contrast_anchors <= 0) || !m_.tokenizer() || !m_.chat_template()) return;
  // (Contrast anchors come from the prompts the window teaches answers to;
  // a preference or a thumbs-down says how to answer, which the user may
  // want for questions about anyone.)
  std::vector<std::string> window_prompts, taught_prompts;
  for (const auto& e : input.new_examples) {
    if (e.context.empty()) continue;
    window_prompts.push_back(e.context.back().content);
    if (e.kind == feedback::ExampleKind::kSft) taught_prompts.push_back(e.context.back().content);
  }
  const auto& pool = o_.anchor_prompts.empty() ? internal::AnchorPool() : o_.anchor_prompts;
  const auto chosen = internal::SelectAnchors(pool, window_prompts, o_.anchor_examples, o_.anchor_selection);
  auto add = [&](const std::string& id, const std::string& prompt, bool from_pool) {
    bool open_ended = false;
    const std::string answer = BaseAnswer(m_, prompt, o_.anchor_max_tokens, &open_ended);
    auto enc = EncodeAnchor(m_, id, prompt, answer, open_ended, float(o_.anchor_weight), o_.encode);
    if (!enc.ok()) return;
    if (from_pool) pool_anchors_.push_back(enc->chosen.ids);
    train_.push_back(std::move(*enc));
  };
  for (size_t i : chosen) add("anchor-" + std::to_string(i), pool[i], true);
  if (!chosen.empty()) {
    r_.notes.push_back("mixed in " + std::to_string(chosen.size()) +
                       " anchor examples (distillation toward the base model on its own answers to general prompts)");
  }
  const auto contrast = internal::ContrastPrompts(taught_prompts, o_.contrast_anchors);
  for (size_t i = 0; i < contrast.size(); ++i) add("contrast-" + std::to_string(i), contrast[i], false);
  if (!contrast.empty()) {
    r_.notes.push_back("mixed in " + std::to_string(contrast.size()) + " contrast anchors (the window's prompts about no one, e.g. '" +
                       contrast.front() + "')");
  }
}

// TrainerOptions::question_dropout_*: copies of the new SFT examples that
// train (not of the held-out slice, whose loss the gate reads, nor of those
// skipped), after them.
void WindowRun::AddQuestionDropout(const TrainInput& input) {
  if (o_.question_dropout_copies <= 0) return;
  std::set<std::string> trained;
  for (const auto& f : fresh_) trained.insert(f.id);
  std::vector<feedback::Example> copies;
  size_t questions = 0;
  for (const auto& e : input.new_examples) {
    if (!trained.count(e.event_id)) continue;
    auto c = internal::QuestionDropoutCopies(e, o_.question_dropout_copies, o_.question_dropout_p,
                                             o_.question_dropout_weight, o_.question_dropout_min_words, o_.seed);
    if (!c.empty()) ++questions;
    for (auto& x : c) copies.push_back(std::move(x));
  }
  const size_t before = train_.size();
  EncodeAll(copies, &train_);
  char buf[200];
  std::snprintf(buf, sizeof buf, "word dropout: %zu copies of %zu questions (p %g, weight %g, %lld words or more)",
                train_.size() - before, questions, o_.question_dropout_p, o_.question_dropout_weight,
                static_cast<long long>(o_.question_dropout_min_words));
  r_.notes.push_back(buf);
}

// The general prompts' inputs to every targeted projection: the anchor pool
// (prompts ready for the reply) and the anchors' base answers.
void WindowRun::MeasureNullSpace() {
  const auto t0 = Clock::now();
  std::vector<std::vector<int64_t>> sequences;
  if (m_.tokenizer() && m_.chat_template()) {
    const auto& pool = o_.anchor_prompts.empty() ? internal::AnchorPool() : o_.anchor_prompts;
    for (const auto& prompt : pool) {
      auto ids = runtime::PromptIds(m_, {{"user", prompt}});
      if (ids.ok()) sequences.emplace_back(ids->begin(), ids->end());
    }
  }
  sequences.insert(sequences.end(), pool_anchors_.begin(), pool_anchors_.end());
  if (sequences.empty()) {
    r_.notes.push_back("null-space constraint off: no general prompts to measure (the model has no chat template)");
    return;
  }
  null_space_.emplace(internal::NullSpace::Measure(m_, o_.lora.targets, sequences, o_.null_space_energy));
  char buf[240];
  std::snprintf(buf, sizeof buf, "null-space constraint: A reads none of %.1f of %.0f input directions on average (%.3g of %zu general sequences' energy; %.1f s, %.0f MB held)",
                null_space_->mean_directions(), null_space_->mean_inputs(), o_.null_space_energy, sequences.size(),
                SecondsSince(t0), double(null_space_->bytes()) / (1 << 20));
  r_.notes.push_back(buf);
}

Status WindowRun::Prepare(const TrainInput& input) {
  const auto t0 = Clock::now();
  EncodeAll(input.new_examples, &fresh_);
  EncodeAll(input.replay_examples, &replay_);
  if (int64_t(fresh_.size()) >= o_.heldout_min_examples && o_.heldout_every > 1) {
    std::vector<EncodedExample> kept;
    for (size_t i = 0; i < fresh_.size(); ++i) {
      if ((int64_t(i) + o_.rotation) % o_.heldout_every == 0) heldout_.push_back(fresh_[i]);
      else kept.push_back(fresh_[i]);
    }
    fresh_.swap(kept);
    r_.notes.push_back("held out " + std::to_string(heldout_.size()) + " new examples (every " + std::to_string(o_.heldout_every) +
                       "th, rotation " + std::to_string(o_.rotation) + "); a later run trains on them");
  } else {
    r_.notes.push_back("fewer than " + std::to_string(o_.heldout_min_examples) + " new examples: all train, no held-out slice");
  }
  train_ = fresh_;
  AddQuestionDropout(input);
  train_.insert(train_.end(), replay_.begin(), replay_.end());
  if (train_.empty()) {
    std::string why = r_.notes.empty() ? "no examples given" : r_.notes.front();
    return InvalidArgumentError("nothing to train on: " + why);
  }
  AddAnchors(input);
  r_.new_examples = int64_t(fresh_.size());
  r_.replay_examples = int64_t(replay_.size());
  const size_t cap = size_t(o_.replay_eval_examples);
  if (cap == 0 || replay_.size() <= cap) {
    replay_measured_ = replay_;
  } else {
    for (size_t i = 0; i < cap; ++i) replay_measured_.push_back(replay_[i * replay_.size() / cap]);
    r_.notes.push_back("replay loss measured on " + std::to_string(cap) + " of the " + std::to_string(replay_.size()) +
                       " replayed examples (replay_eval_examples)");
  }
  r_.heldout_examples = int64_t(heldout_.size());
  params_.emplace(LoraParams::Init(m_, o_.lora, o_.seed));
  has_parent_ = !input.parent.empty();
  if (has_parent_) {
    Status s = params_->Assign(input.parent);
    if (!s.ok()) return FailedPreconditionError("the parent adapter does not fit this LoRA configuration: " + s.message());
  }
  base_of_.assign(train_.size(), at::Tensor());  // (train_ is final: anchors added)
  if (o_.null_space_energy > 0) MeasureNullSpace();
  parent_values_ = params_->Snapshot();
  opt_.emplace(params_->parameters(), o_.adamw);
  mb_ = PickMicroBatch(m_, o_);
  r_.micro_batch_size = mb_;

  Sha256 ek;
  for (const auto* set : {&train_, &heldout_}) {
    for (const auto& e : *set) ek.Update(e.id + "/" + std::to_string(int(e.objective)) + ";");
    ek.Update("|");
  }
  st_.base_fingerprint = m_.fingerprint();
  st_.config_key = ConfigKey(o_, mb_);
  st_.examples_key = ek.FinishHex();
  st_.window = input.window;
  r_.prepare_seconds = SecondsSince(t0);
  return Status::Ok();
}

Status WindowRun::Resume() {
  if (checkpoint_path_.empty() || !PathExists(checkpoint_path_)) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_current_seed(o_.seed);
    plan_ = PlanOf(st_.epoch);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(internal::CheckpointState ck, internal::LoadCheckpoint(checkpoint_path_));
  if (ck.base_fingerprint != st_.base_fingerprint) {
    return FailedPreconditionError("checkpoint '" + checkpoint_path_ + "' was written for another base model (hint: remove it to start over)");
  }
  if (ck.config_key != st_.config_key || ck.examples_key != st_.examples_key || !internal::SameWindow(ck.window, st_.window)) {
    return FailedPreconditionError("checkpoint '" + checkpoint_path_ + "' belongs to a run with other options or other examples (hint: remove it to start over)");
  }
  RETURN_IF_ERROR(params_->Assign(ck.params));
  for (size_t i = 0; i < ck.params.size(); ++i) {
    opt_->exp_avg()[i].copy_(ck.exp_avg[i]);
    opt_->exp_avg_sq()[i].copy_(ck.exp_avg_sq[i]);
  }
  opt_->set_step(ck.step);
  {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(ck.rng_state);
  }
  // (The identity fields are equal; the tensors of the state live in
  // params_ and opt_.)
  ck.params.clear(), ck.exp_avg.clear(), ck.exp_avg_sq.clear();
  st_ = std::move(ck);
  plan_ = PlanOf(st_.epoch);
  r_.notes.push_back("resumed from step " + std::to_string(st_.step));
  return Status::Ok();
}

// The parent's losses, for the regression checks of the report.
void WindowRun::MeasureParent() {
  const auto t0 = Clock::now();
  runtime::LoraWeights parent_w = WeightsOf(m_, o_.lora, parent_values_);
  const runtime::LoraWeights* parent = has_parent_ ? &parent_w : nullptr;
  r_.new_loss_parent = trainer_.MeanLoss(fresh_, parent);
  r_.unlikelihood_parent = trainer_.EvalUnlikelihood(fresh_, parent);
  r_.dpo_loss_parent = trainer_.EvalDpoLoss(fresh_, parent);
  r_.replay_loss_parent = trainer_.MeanLoss(replay_measured_, parent);
  r_.heldout_loss_parent = trainer_.MeanLoss(heldout_, parent);
  early_stopping_ = o_.early_stopping_patience > 0 && std::isfinite(r_.heldout_loss_parent);
  if (o_.early_stopping_patience > 0 && !early_stopping_) {
    r_.notes.push_back("early stopping is off: the window has no held-out slice to measure");
  }
  r_.parent_seconds = SecondsSince(t0);
}

// An epoch's micro-batches: the examples of each objective in shuffled
// order, cut into groups of up to mb, then the groups shuffled. A
// checkpoint's (epoch, position) names the next group exactly.
std::vector<std::vector<size_t>> WindowRun::PlanOf(int64_t epoch) const {
  std::vector<size_t> order(train_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(o_.seed * 1000003 + uint64_t(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<size_t>> groups;
  for (Objective obj : {Objective::kSft, Objective::kDpo, Objective::kKto, Objective::kDistill}) {
    std::vector<size_t> cur;
    for (size_t i : order) {
      if (train_[i].objective != obj) continue;
      cur.push_back(i);
      if (int64_t(cur.size()) == mb_) groups.push_back(std::move(cur)), cur.clear();
    }
    if (!cur.empty()) groups.push_back(std::move(cur));
  }
  std::shuffle(groups.begin(), groups.end(), rng);
  return groups;
}

std::pair<std::vector<const EncodedExample*>, int64_t> WindowRun::NextMicro() {
  if (st_.position >= int64_t(plan_.size())) {
    ++st_.epoch;
    st_.position = 0;
    plan_ = PlanOf(st_.epoch);
  }
  std::vector<const EncodedExample*> mbx;
  int64_t tokens = 0;
  for (size_t i : plan_[size_t(st_.position)]) {
    mbx.push_back(&train_[i]);
    tokens += int64_t(train_[i].chosen.ids.size() + train_[i].rejected.ids.size());
  }
  ++st_.position;
  return {mbx, tokens};
}

// One micro-batch's forward and backward (its gradients accumulate); its
// loss. Adds the batch's padding (rows x longest - the rows' tokens) to
// *padding, and the slots its shared prefix saved ((rows - 1) x its length)
// to *shared.
double WindowRun::RunMicro(const std::vector<const EncodedExample*>& mbx, int64_t* padding, int64_t* shared) {
  const Objective obj = mbx[0]->objective;
  const runtime::LoraWeights w = params_->Weights(/*training=*/true);
  const double accum = double(o_.grad_accum_steps);
  std::vector<const Sequence*> seqs;
  std::vector<float> weights, desirable;
  for (const auto* e : mbx) {
    seqs.push_back(&e->chosen);
    weights.push_back(e->weight);
    desirable.push_back(e->desirable ? 1.f : 0.f);
  }
  if (obj == Objective::kDpo) {
    for (const auto* e : mbx) seqs.push_back(&e->rejected);
  }
  Batch b = MakeBatch(seqs);
  *padding += b.ids.numel();
  for (const Sequence* s : seqs) *padding -= int64_t(s->ids.size());
  const int64_t prefix = SharedPrefixLength(b.ids, w);
  *shared += (b.ids.size(0) - 1) * prefix;
  at::Tensor wt = at::tensor(weights);
  const bool ckpt = o_.gradient_checkpointing;
  // (Without checkpointing every layer keeps its graph: no budget to fit.)
  const size_t graph_layers =
      ckpt ? GraphLayers(m_.config(), b.ids.size(0), b.ids.size(1), o_.graph_memory_mb, prefix) : 0;
  if (ckpt && o_.graph_memory_mb > 0) {
    graph_layers_seen_.first = std::min(graph_layers_seen_.first, graph_layers);
    graph_layers_seen_.second = std::max(graph_layers_seen_.second, graph_layers);
  }
  if (obj == Objective::kSft) {
    const double norm = b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>() * accum / o_.sft_weight;
    return ForwardBackward(
        m_, w, b.ids, ckpt, [&](const at::Tensor& h) { return SftLoss(m_, h, b, wt, norm); }, graph_layers, prefix,
        o_.neftune_alpha);
  }
  // The frozen base's side of the loss, per example (rows in
  // SequenceLogProbs order: the batch's rows in turn).
  std::vector<at::Tensor> parts;
  for (const auto* e : mbx) {
    const at::Tensor& v = BaseOf(*e);
    parts.push_back(obj == Objective::kDistill ? v : v.narrow(0, 0, 1));
  }
  if (obj == Objective::kDpo) {
    for (const auto* e : mbx) parts.push_back(BaseOf(*e).narrow(0, 1, 1));
  }
  if (obj == Objective::kDistill) {
    const double norm = b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>() * accum;
    const at::Tensor base = HeadLogProbs(m_, at::cat(parts));
    const at::Tensor positions = MarginWeights(base, o_.anchor_margin_boost);
    return ForwardBackward(
        m_, w, b.ids, ckpt, [&](const at::Tensor& h) { return DistillLoss(m_, h, b, base, wt, norm, positions); },
        graph_layers, prefix);
  }
  const at::Tensor ref = at::cat(parts);  // adapter off = reference model
  const double norm = double(mbx.size()) * accum;
  if (obj == Objective::kDpo) {
    return ForwardBackward(m_, w, b.ids, ckpt, [&](const at::Tensor& h) {
      return DpoLoss(m_, h, b, ref, wt, o_.dpo_beta, norm / o_.dpo_weight);
    }, graph_layers, prefix, o_.neftune_alpha);
  }
  return ForwardBackward(m_, w, b.ids, ckpt, [&](const at::Tensor& h) {
    return KtoLoss(m_, h, b, ref, at::tensor(desirable), wt, o_.kto_beta, /*z0=*/0.0, norm / o_.kto_weight);
  }, graph_layers, prefix, o_.neftune_alpha);
}

// What the frozen base gives an example, which no step changes: for
// distillation the normed final hidden states at its scored positions
// (BaseTargetRows), for DPO and KTO the reference log-probabilities of its
// chosen (and rejected) sequence. Computed the first time the example is
// trained in the window, for the example alone, so that the value does not
// depend on the batch it came in (a resumed window uses what a straight one
// did), and the base's forward pass runs once per example and window instead
// of once per micro-batch and step.
const at::Tensor& WindowRun::BaseOf(const EncodedExample& e) {
  at::Tensor& t = base_of_.at(size_t(&e - train_.data()));
  if (t.defined()) return t;
  at::NoGradGuard ng;
  std::vector<const Sequence*> seqs = {&e.chosen};
  if (e.objective == Objective::kDpo) seqs.push_back(&e.rejected);
  const Batch b = MakeBatch(seqs);
  const at::Tensor hidden = runtime::HiddenStates(m_, nullptr, b.ids);
  t = e.objective == Objective::kDistill ? BaseTargetRows(m_, hidden, b) : SequenceLogProbs(m_, hidden, b);
  return t;
}

Status WindowRun::Save(const internal::CheckpointState& s) {
  if (checkpoint_path_.empty()) return Status::Ok();
  internal::CheckpointState c = s;
  c.params = params_->Snapshot();
  c.exp_avg = opt_->exp_avg();
  c.exp_avg_sq = opt_->exp_avg_sq();
  c.wall_seconds = s.wall_seconds + Elapsed();
  return SaveCheckpoint(checkpoint_path_, c);
}

// Early stopping's measurement of the current adapter: true when it is a
// new lowest (then kept, and the count of measurements since reset).
bool WindowRun::MeasureHeldout() {
  const runtime::LoraWeights now = params_->Weights(false);
  const double loss = trainer_.MeanLoss(heldout_, &now);
  if (std::isfinite(loss)) st_.heldout_curve.emplace_back(st_.step, loss);
  if (!(loss < st_.best_loss)) return false;
  st_.best_loss = loss;
  st_.best_step = st_.step;
  st_.best_params = params_->Snapshot();
  st_.evals_since_best = 0;
  return true;
}

// One optimizer step: grad_accum_steps micro-batches, the pull toward the
// parent, clipping, the update. A stop inside it puts everything back as it
// was at the step's start (and saves that); a non-finite loss or gradient
// updates nothing.
WindowRun::StepEnd WindowRun::Step(const std::function<bool()>& should_stop) {
  internal::CheckpointState at_boundary = st_;
  {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    at_boundary.rng_state = gen_.get_state();
  }
  const std::vector<at::Tensor> boundary_params = params_->Snapshot();
  double step_loss = 0;
  int64_t step_tokens = 0, step_padding = 0, step_shared = 0;
  for (int64_t a = 0; a < o_.grad_accum_steps; ++a) {
    if (should_stop && should_stop()) {
      opt_->ZeroGrad();
      params_->Assign(boundary_params).IgnoreError();  // its own snapshot: the shapes fit
      st_ = std::move(at_boundary);
      return StepEnd::kStopped;
    }
    auto [mbx, tokens] = NextMicro();
    step_loss += RunMicro(mbx, &step_padding, &step_shared);
    step_tokens += tokens;
    if (o_.max_tokens_per_step > 0 && step_tokens >= o_.max_tokens_per_step) break;
  }
  const auto& ps = params_->parameters();
  if (o_.l2_to_parent > 0 && has_parent_) {
    // (the pull is part of the gradient, so it is clipped with it)
    at::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); ++i) {
      at::Tensor g = 2.0 * o_.l2_to_parent * (ps[i].detach() - parent_values_[i]);
      if (ps[i].grad().defined()) ps[i].mutable_grad().add_(g);
      else ps[i].mutable_grad() = g;
    }
  }
  const double grad_norm = GradNorm(ps);
  if (!std::isfinite(step_loss) || !std::isfinite(grad_norm)) {
    // One bad batch must not poison the adapter: no update, and the next
    // step starts from the same parameters and moments.
    opt_->ZeroGrad();
    ++st_.skipped_steps;
    return StepEnd::kNonFinite;
  }
  if (o_.max_grad_norm > 0 && grad_norm > o_.max_grad_norm) {
    ScaleGrads(ps, o_.max_grad_norm / (grad_norm + 1e-6));
    ++st_.clipped_steps;
  }
  opt_->Step(ScheduledLr(o_, st_.step));
  if (null_space_) null_space_->Apply(*params_);
  opt_->ZeroGrad();
  ++st_.step;
  st_.tokens += step_tokens;
  r_.padding_tokens += step_padding;
  r_.shared_prefix_tokens += step_shared;
  st_.loss_curve.push_back(step_loss);
  return StepEnd::kTaken;
}

Status WindowRun::Train(const std::function<bool()>& should_stop) {
  const auto t0 = Clock::now();
  struct Timer {
    const Clock::time_point& t0;
    double& out;
    ~Timer() { out = SecondsSince(t0); }
  } timer{t0, r_.steps_seconds};
  r_.stop_reason = "max_steps";
  prior_seconds_ = st_.wall_seconds;
  const int64_t first_step = st_.step;
  int64_t nonfinite_in_a_row = 0;
  // The window trains from its parent with A projected (a parent trained
  // without the constraint loses what it read there); the parent's own
  // losses, measured before, are the served adapter's. (Idempotent on a
  // resumed window, whose A already is.)
  if (null_space_) null_space_->Apply(*params_);
  while (st_.step < o_.max_steps) {
    const StepEnd end = Step(should_stop);
    if (end == StepEnd::kStopped) {
      r_.stop_reason = "stopped";
      return Save(st_);
    }
    if (end == StepEnd::kNonFinite) {
      if (++nonfinite_in_a_row >= o_.max_nonfinite_steps) {
        r_.stop_reason = "non_finite";
        return Status::Ok();
      }
      continue;
    }
    nonfinite_in_a_row = 0;
    const double elapsed = Elapsed();
    if (progress_) {
      TrainProgress p;
      p.step = st_.step;
      p.max_steps = o_.max_steps;
      p.loss = st_.loss_curve.back();
      p.tokens_per_second = elapsed > 0 ? double(st_.tokens) / (elapsed + prior_seconds_) : 0;
      p.eta_seconds = elapsed / double(st_.step - first_step) * double(o_.max_steps - st_.step);
      progress_(p);
    }
    if (early_stopping_ && (st_.step % o_.eval_every_steps == 0 || st_.step == o_.max_steps) && !MeasureHeldout() &&
        ++st_.evals_since_best >= o_.early_stopping_patience) {
      r_.stop_reason = "early_stopping";
      return Status::Ok();
    }
    if (o_.checkpoint_every_steps > 0 && st_.step % o_.checkpoint_every_steps == 0 && st_.step < o_.max_steps) {
      internal::CheckpointState now = st_;
      {
        std::lock_guard<std::mutex> lock(gen_.mutex());
        now.rng_state = gen_.get_state();
      }
      RETURN_IF_ERROR(Save(now));
    }
    if (o_.max_minutes > 0 && (elapsed + prior_seconds_) / 60.0 >= o_.max_minutes) {
      r_.stop_reason = "max_minutes";
      return Status::Ok();
    }
  }
  return Status::Ok();
}

Result<TrainOutcome> WindowRun::Finish() {
  r_.steps = st_.step;
  r_.skipped_steps = st_.skipped_steps;
  r_.clipped_steps = st_.clipped_steps;
  if (st_.skipped_steps > 0) r_.notes.push_back("skipped " + std::to_string(st_.skipped_steps) + " steps whose loss or gradient was not finite");
  if (o_.neftune_alpha > 0) {
    char buf[120];
    std::snprintf(buf, sizeof buf, "noisy embeddings (NEFTune, alpha %g) on the user's examples, not the anchors",
                  o_.neftune_alpha);
    r_.notes.push_back(buf);
  }
  if (graph_layers_seen_.first != SIZE_MAX) {
    const auto [fewest, most] = graph_layers_seen_;
    r_.notes.push_back("graph_memory_mb " + std::to_string(o_.graph_memory_mb) + ": the micro-batches kept the graph of their top " +
                       (fewest == most ? std::to_string(most) : std::to_string(fewest) + " to " + std::to_string(most)) +
                       " of " + std::to_string(m_.layers().size()) + " layers instead of recomputing them");
  }
  r_.tokens = st_.tokens;
  r_.loss_curve = st_.loss_curve;
  const auto candidate_t0 = Clock::now();
  r_.wall_seconds = prior_seconds_ + Elapsed();
  r_.tokens_per_second = r_.wall_seconds > 0 ? double(r_.tokens) / r_.wall_seconds : 0;
  r_.peak_rss_mb = PeakRssMb();
  if (r_.stop_reason == "stopped") {
    r_.completed = false;
    return std::move(out_);
  }
  if (r_.stop_reason == "non_finite") {
    // Resuming would replay the same steps: start the next window afresh.
    r_.completed = false;
    r_.notes.push_back(std::to_string(o_.max_nonfinite_steps) + " steps in a row had a non-finite loss or gradient after " +
                       std::to_string(st_.step) + " good steps; the window ended without a candidate (hint: lower the learning rate or check the examples)");
    RemoveCheckpoint();
    return std::move(out_);
  }
  r_.completed = true;
  // A window cut by max_minutes ends between measurements: its last adapter
  // is measured too.
  if (early_stopping_ && r_.stop_reason == "max_minutes" &&
      (st_.heldout_curve.empty() || st_.heldout_curve.back().first != st_.step)) {
    MeasureHeldout();
  }
  r_.kept_step = st_.step;
  r_.heldout_curve = st_.heldout_curve;
  if (early_stopping_ && !st_.best_params.empty() && st_.best_step != st_.step) {
    RETURN_IF_ERROR(params_->Assign(st_.best_params));
    r_.kept_step = st_.best_step;
    r_.notes.push_back("early stopping: the candidate is step " + std::to_string(st_.best_step) +
                       "'s adapter, the lowest held-out loss (" + std::to_string(st_.best_loss) + ") of " +
                       std::to_string(st_.heldout_curve.size()) + " measurements");
  }
  if (o_.candidate_scale != 1.0) {
    at::NoGradGuard ng;
    const auto& names = params_->names();
    const auto& ps = params_->parameters();
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!names[i].ends_with(".b")) continue;
      ps[i].detach().copy_(parent_values_[i] + o_.candidate_scale * (ps[i].detach() - parent_values_[i]));
    }
    r_.notes.push_back("candidate interpolated toward its parent: B = parent B + " + std::to_string(o_.candidate_scale) +
                       " x (trained B - parent B)");
  }
  const runtime::LoraWeights cand = params_->Weights(false);
  r_.new_loss_candidate = trainer_.MeanLoss(fresh_, &cand);
  r_.unlikelihood_candidate = trainer_.EvalUnlikelihood(fresh_, &cand);
  r_.dpo_loss_candidate = trainer_.EvalDpoLoss(fresh_, &cand, &r_.dpo_reward_accuracy);
  {
    // The gate judges what the objectives optimise: with undesirable or
    // preference examples in the window, the mean relative change of every
    // objective present (trainer_options.h).
    double ratio_sum = 0;
    int objectives = 0;
    const bool beyond_sft = std::isfinite(r_.unlikelihood_parent) || std::isfinite(r_.dpo_loss_parent);
    for (auto [par, can] : {std::pair{r_.new_loss_parent, r_.new_loss_candidate},
                            std::pair{r_.unlikelihood_parent, r_.unlikelihood_candidate},
                            std::pair{r_.dpo_loss_parent, r_.dpo_loss_candidate}}) {
      if (!std::isfinite(par) || par <= 0) continue;
      ratio_sum += can / par;
      ++objectives;
    }
    r_.objective_score_parent = beyond_sft && objectives ? 1.0 : kNaN;
    r_.objective_score_candidate = beyond_sft && objectives ? ratio_sum / objectives : kNaN;
  }
  r_.replay_loss_candidate = trainer_.MeanLoss(replay_measured_, &cand);
  // The kept adapter's held-out loss was measured when it was kept (unless
  // it was interpolated since).
  const auto measured = std::find_if(st_.heldout_curve.begin(), st_.heldout_curve.end(),
                                     [&](const auto& e) { return e.first == r_.kept_step; });
  r_.heldout_loss_candidate = measured != st_.heldout_curve.end() && o_.candidate_scale == 1.0
                                  ? measured->second
                                  : trainer_.MeanLoss(heldout_, &cand);
  r_.forgetting_kl = trainer_.ForgettingKl(cand);
  r_.peak_rss_mb = PeakRssMb();
  r_.candidate_seconds = SecondsSince(candidate_t0);
  out_.names = params_->names();
  out_.adapter = params_->Snapshot();
  RemoveCheckpoint();
  return std::move(out_);
}

}  // namespace

Result<TrainOutcome> Trainer::RunUnguarded(const TrainInput& input, const std::string& checkpoint_path,
                                           const std::function<bool()>& should_stop,
                                           const std::function<void(const TrainProgress&)>& progress) {
  WindowRun window(*this, *model_, o_, checkpoint_path, progress);
  RETURN_IF_ERROR(window.Prepare(input));
  RETURN_IF_ERROR(window.Resume());
  window.MeasureParent();
  RETURN_IF_ERROR(window.Train(should_stop));
  return window.Finish();
}

}  // namespace attune::trainer
