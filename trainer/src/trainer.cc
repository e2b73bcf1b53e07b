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

#include "attune/core/file.h"
#include "attune/core/process.h"
#include "attune/core/sha256.h"
#include "attune/runtime/generate.h"
#include "attune/runtime/linear_weight.h"
#include "anchors.h"
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

// Linear warm-up (as transformers' get_linear_schedule_with_warmup without
// the decay): a fresh AdamW's first steps are its largest, relative to the
// gradient, so they start small.
double WarmedUpLr(const TrainerOptions& o, int64_t step) {
  if (o.warmup_steps <= 0 || step >= o.warmup_steps) return o.adamw.lr;
  return o.adamw.lr * double(step + 1) / double(o.warmup_steps + 1);
}

// Builds LoRA weights holding `values` (LoraParams order) for evaluation.
runtime::LoraWeights WeightsOf(const runtime::Model& m, const LoraConfig& c, const std::vector<at::Tensor>& values) {
  LoraParams p = LoraParams::Init(m, c, 0);
  p.Assign(values).IgnoreError();  // shapes were checked when `values` was accepted
  return p.Weights(false);
}

}  // namespace

std::string TrainReport::ToJson() const {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  nlohmann::json j = {{"completed", completed},
                      {"stop_reason", stop_reason},
                      {"steps", steps},
                      {"skipped_steps", skipped_steps},
                      {"clipped_steps", clipped_steps},
                      {"tokens", tokens},
                      {"micro_batch_size", micro_batch_size},
                      {"base_products", bf16_base ? "bf16" : "fp32"},
                      {"wall_seconds", wall_seconds},
                      {"tokens_per_second", tokens_per_second},
                      {"peak_rss_mb", peak_rss_mb},
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
    nll -= SequenceLogProbs(*model_, Hidden(*model_, lora, b.ids), b).sum().item<double>();
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
    const double mean_lp = SequenceLogProbs(*model_, Hidden(*model_, lora, b.ids), b).item<double>() / tokens;
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
    at::Tensor ref = SequenceLogProbs(*model_, Hidden(*model_, nullptr, b.ids), b);
    at::Tensor pol = SequenceLogProbs(*model_, Hidden(*model_, lora, b.ids), b);
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
  const std::string& bp = o_.base_products;
  if (!KnownBaseProducts(bp)) {
    return InvalidArgumentError("base_products must be \"auto\", \"fp32\" or \"bf16\", not '" + bp + "'");
  }
  const bool bf16_base = bp == "bf16" || (bp == "auto" && runtime::CpuHasBf16());
  if (o_.threads < 0) return InvalidArgumentError("threads must be >= 0, not " + std::to_string(o_.threads));
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

Result<TrainOutcome> Trainer::RunUnguarded(const TrainInput& input, const std::string& checkpoint_path,
                                           const std::function<bool()>& should_stop,
                                           const std::function<void(const TrainProgress&)>& progress) {
  const auto t_start = Clock::now();
  const runtime::Model& m = *model_;
  TrainOutcome out;
  TrainReport& r = out.report;
  if (o_.max_steps <= 0 || o_.grad_accum_steps <= 0) return InvalidArgumentError("max steps and gradient accumulation must be positive");
  if (o_.early_stopping_patience < 0 || o_.eval_every_steps <= 0) {
    return InvalidArgumentError("early_stopping_patience must be >= 0 and eval_every_steps positive, not " +
                                std::to_string(o_.early_stopping_patience) + " and " + std::to_string(o_.eval_every_steps));
  }
  if (o_.anchor_selection != "first" && o_.anchor_selection != "nearest") {
    return InvalidArgumentError("anchor_selection must be \"first\" or \"nearest\", not '" + o_.anchor_selection + "'");
  }

  // Encode; an example that cannot be trained is skipped with a reason.
  auto encode_all = [&](const std::vector<TextExample>& in, std::vector<EncodedExample>* dst) {
    for (const auto& e : in) {
      auto enc = Encode(m, e, o_.encode);
      if (!enc.ok()) {
        ++r.skipped_examples;
        r.notes.push_back("skipped: " + enc.status().message());
        continue;
      }
      if (enc->truncated) r.notes.push_back("truncated to " + std::to_string(o_.encode.max_seq_len) + " tokens: example '" + e.id + "'");
      dst->push_back(std::move(*enc));
    }
  };
  std::vector<EncodedExample> fresh, replay, heldout, train;
  encode_all(input.new_examples, &fresh);
  encode_all(input.replay_examples, &replay);
  if (int64_t(fresh.size()) >= o_.heldout_min_examples && o_.heldout_every > 1) {
    std::vector<EncodedExample> kept;
    for (size_t i = 0; i < fresh.size(); ++i) {
      if ((int64_t(i) + o_.rotation) % o_.heldout_every == 0) heldout.push_back(fresh[i]);
      else kept.push_back(fresh[i]);
    }
    fresh.swap(kept);
    r.notes.push_back("held out " + std::to_string(heldout.size()) + " new examples (every " + std::to_string(o_.heldout_every) +
                      "th, rotation " + std::to_string(o_.rotation) + "); a later run trains on them");
  } else {
    r.notes.push_back("fewer than " + std::to_string(o_.heldout_min_examples) + " new examples: all train, no held-out slice");
  }
  train = fresh;
  train.insert(train.end(), replay.begin(), replay.end());
  if (train.empty()) {
    std::string why = r.notes.empty() ? "no examples given" : r.notes.front();
    return InvalidArgumentError("nothing to train on: " + why);
  }

  if (o_.anchor_examples > 0 && m.tokenizer() && m.chat_template()) {
    std::vector<std::string> window_prompts;
    for (const auto& e : input.new_examples) {
      if (!e.context.empty()) window_prompts.push_back(e.context.back().content);
    }
    const auto& pool = o_.anchor_prompts.empty() ? internal::AnchorPool() : o_.anchor_prompts;
    const auto chosen = internal::SelectAnchors(pool, window_prompts, o_.anchor_examples, o_.anchor_selection);
    const int64_t n = int64_t(chosen.size());
    for (size_t i : chosen) {
      const std::string& prompt = pool[i];
      TextExample a;
      a.id = "anchor-" + std::to_string(i);
      a.context = {{"user", prompt}};
      a.completion = BaseAnswer(m, prompt, o_.anchor_max_tokens, &a.open_ended);
      a.weight = float(o_.anchor_weight);
      a.objective = Objective::kDistill;
      auto enc = Encode(m, a, o_.encode);
      if (enc.ok()) train.push_back(std::move(*enc));
    }
    r.notes.push_back("mixed in " + std::to_string(n) + " anchor examples (distillation toward the base model on its own answers to general prompts)");
  }
  r.new_examples = int64_t(fresh.size());
  r.replay_examples = int64_t(replay.size());
  r.heldout_examples = int64_t(heldout.size());
  LoraParams params = LoraParams::Init(m, o_.lora, o_.seed);
  if (!input.parent.empty()) {
    Status st = params.Assign(input.parent);
    if (!st.ok()) return FailedPreconditionError("the parent adapter does not fit this LoRA configuration: " + st.message());
  }
  const std::vector<at::Tensor> parent_values = params.Snapshot();
  AdamW opt(params.parameters(), o_.adamw);
  const int64_t mb = PickMicroBatch(m, o_);
  r.micro_batch_size = mb;

  Sha256 ek;
  for (const auto* set : {&train, &heldout}) {
    for (const auto& e : *set) ek.Update(e.id + "/" + std::to_string(int(e.objective)) + ";");
    ek.Update("|");
  }
  internal::CheckpointState st;
  st.base_fingerprint = m.fingerprint();
  st.config_key = ConfigKey(o_, mb);
  st.examples_key = ek.FinishHex();
  st.window = input.window;
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  if (!checkpoint_path.empty() && PathExists(checkpoint_path)) {
    ASSIGN_OR_RETURN(internal::CheckpointState ck, internal::LoadCheckpoint(checkpoint_path));
    if (ck.base_fingerprint != st.base_fingerprint) {
      return FailedPreconditionError("checkpoint '" + checkpoint_path + "' was written for another base model (hint: remove it to start over)");
    }
    if (ck.config_key != st.config_key || ck.examples_key != st.examples_key || !internal::SameWindow(ck.window, st.window)) {
      return FailedPreconditionError("checkpoint '" + checkpoint_path + "' belongs to a run with other options or other examples (hint: remove it to start over)");
    }
    RETURN_IF_ERROR(params.Assign(ck.params));
    for (size_t i = 0; i < ck.params.size(); ++i) {
      opt.exp_avg()[i].copy_(ck.exp_avg[i]);
      opt.exp_avg_sq()[i].copy_(ck.exp_avg_sq[i]);
    }
    opt.set_step(ck.step);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(ck.rng_state);
    st.step = ck.step, st.epoch = ck.epoch, st.position = ck.position, st.tokens = ck.tokens;
    st.wall_seconds = ck.wall_seconds, st.loss_curve = ck.loss_curve, st.skipped_steps = ck.skipped_steps, st.clipped_steps = ck.clipped_steps;
    st.heldout_curve = ck.heldout_curve, st.best_step = ck.best_step, st.evals_since_best = ck.evals_since_best;
    st.best_loss = ck.best_loss, st.best_params = ck.best_params;
    r.notes.push_back("resumed from step " + std::to_string(ck.step));
  } else {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(o_.seed);
  }

  // The parent's losses, for the regression checks of the report.
  const bool has_parent = !input.parent.empty();
  runtime::LoraWeights parent_w = WeightsOf(m, o_.lora, parent_values);
  const runtime::LoraWeights* parent_ptr = has_parent ? &parent_w : nullptr;
  r.new_loss_parent = MeanLoss(fresh, parent_ptr);
  r.unlikelihood_parent = EvalUnlikelihood(fresh, parent_ptr);
  r.dpo_loss_parent = EvalDpoLoss(fresh, parent_ptr);
  r.replay_loss_parent = MeanLoss(replay, parent_ptr);
  r.heldout_loss_parent = MeanLoss(heldout, parent_ptr);
  const bool early_stopping = o_.early_stopping_patience > 0 && std::isfinite(r.heldout_loss_parent);
  if (o_.early_stopping_patience > 0 && !early_stopping) {
    r.notes.push_back("early stopping is off: the window has no held-out slice to measure");
  }

  // An epoch's micro-batches: the examples of each objective in shuffled
  // order, cut into groups of up to mb, then the groups shuffled. A
  // checkpoint's (epoch, position) names the next group exactly.
  auto plan_of = [&](int64_t epoch) {
    std::vector<size_t> order(train.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::mt19937_64 rng(o_.seed * 1000003 + uint64_t(epoch));
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::vector<size_t>> groups;
    for (Objective obj : {Objective::kSft, Objective::kDpo, Objective::kKto, Objective::kDistill}) {
      std::vector<size_t> cur;
      for (size_t i : order) {
        if (train[i].objective != obj) continue;
        cur.push_back(i);
        if (int64_t(cur.size()) == mb) groups.push_back(std::move(cur)), cur.clear();
      }
      if (!cur.empty()) groups.push_back(std::move(cur));
    }
    std::shuffle(groups.begin(), groups.end(), rng);
    return groups;
  };
  std::vector<std::vector<size_t>> plan = plan_of(st.epoch);
  auto next_micro = [&]() {
    if (st.position >= int64_t(plan.size())) {
      ++st.epoch;
      st.position = 0;
      plan = plan_of(st.epoch);
    }
    std::vector<const EncodedExample*> mbx;
    int64_t tokens = 0;
    for (size_t i : plan[size_t(st.position)]) {
      mbx.push_back(&train[i]);
      tokens += int64_t(train[i].chosen.ids.size() + train[i].rejected.ids.size());
    }
    ++st.position;
    return std::make_pair(mbx, tokens);
  };
  auto run_micro = [&](const std::vector<const EncodedExample*>& mbx) -> double {
    const Objective obj = mbx[0]->objective;
    const runtime::LoraWeights w = params.Weights(/*training=*/true);
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
    at::Tensor wt = at::tensor(weights);
    if (obj == Objective::kSft) {
      const double norm = b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>() * accum / o_.sft_weight;
      return ForwardBackward(m, w, b.ids, o_.gradient_checkpointing, [&](const at::Tensor& h) { return SftLoss(m, h, b, wt, norm); });
    }
    if (obj == Objective::kDistill) {
      const double norm = b.scored.narrow(1, 1, b.scored.size(1) - 1).sum().item<double>() * accum;
      at::Tensor base;
      {
        at::NoGradGuard ng;
        base = BaseLogProbsAtTargets(m, Hidden(m, nullptr, b.ids), b);
      }
      return ForwardBackward(m, w, b.ids, o_.gradient_checkpointing,
                             [&](const at::Tensor& h) { return DistillLoss(m, h, b, base, wt, norm); });
    }
    at::Tensor ref;
    {
      at::NoGradGuard ng;
      ref = SequenceLogProbs(m, Hidden(m, nullptr, b.ids), b);  // adapter off = reference model
    }
    const double norm = double(mbx.size()) * accum;
    if (obj == Objective::kDpo) {
      return ForwardBackward(m, w, b.ids, o_.gradient_checkpointing, [&](const at::Tensor& h) {
        return DpoLoss(m, h, b, ref, wt, o_.dpo_beta, norm / o_.dpo_weight);
      });
    }
    return ForwardBackward(m, w, b.ids, o_.gradient_checkpointing, [&](const at::Tensor& h) {
      return KtoLoss(m, h, b, ref, at::tensor(desirable), wt, o_.kto_beta, /*z0=*/0.0, norm / o_.kto_weight);
    });
  };
  auto save = [&](const internal::CheckpointState& s) -> Status {
    if (checkpoint_path.empty()) return Status::Ok();
    internal::CheckpointState c = s;
    c.params = params.Snapshot();
    c.exp_avg = opt.exp_avg();
    c.exp_avg_sq = opt.exp_avg_sq();
    c.wall_seconds = s.wall_seconds + std::chrono::duration<double>(Clock::now() - t_start).count();
    return SaveCheckpoint(checkpoint_path, c);
  };

  // Early stopping's measurement of the current adapter: true when it is a
  // new lowest (then kept, and the count of measurements since reset).
  auto measure_heldout = [&]() {
    const runtime::LoraWeights now = params.Weights(false);
    const double loss = MeanLoss(heldout, &now);
    if (std::isfinite(loss)) st.heldout_curve.emplace_back(st.step, loss);
    if (!(loss < st.best_loss)) return false;
    st.best_loss = loss;
    st.best_step = st.step;
    st.best_params = params.Snapshot();
    st.evals_since_best = 0;
    return true;
  };

  r.stop_reason = "max_steps";
  bool stopped = false, non_finite = false;
  int64_t nonfinite_in_a_row = 0;
  const double prior_seconds = st.wall_seconds;
  const int64_t first_step = st.step;
  try {
    while (st.step < o_.max_steps) {
      // State at the step boundary: a stop inside the step returns here.
      internal::CheckpointState at_boundary = st;
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        at_boundary.rng_state = gen.get_state();
      }
      std::vector<at::Tensor> boundary_params = params.Snapshot();
      double step_loss = 0;
      int64_t step_tokens = 0;
      for (int64_t a = 0; a < o_.grad_accum_steps; ++a) {
        if (should_stop && should_stop()) {
          stopped = true;
          break;
        }
        auto [mbx, tokens] = next_micro();
        step_loss += run_micro(mbx);
        step_tokens += tokens;
        if (o_.max_tokens_per_step > 0 && step_tokens >= o_.max_tokens_per_step) break;
      }
      if (stopped) {
        opt.ZeroGrad();
        RETURN_IF_ERROR(params.Assign(boundary_params));
        st = at_boundary;
        RETURN_IF_ERROR(save(st));
        r.stop_reason = "stopped";
        break;
      }
      if (o_.l2_to_parent > 0 && has_parent) {
        // (the pull is part of the gradient, so it is clipped with it)
        at::NoGradGuard ng;
        const auto& ps = params.parameters();
        for (size_t i = 0; i < ps.size(); ++i) {
          at::Tensor g = 2.0 * o_.l2_to_parent * (ps[i].detach() - parent_values[i]);
          if (ps[i].grad().defined()) ps[i].mutable_grad().add_(g);
          else ps[i].mutable_grad() = g;
        }
      }
      const double grad_norm = GradNorm(params.parameters());
      if (!std::isfinite(step_loss) || !std::isfinite(grad_norm)) {
        // One bad batch must not poison the adapter: no update, and the
        // next step starts from the same parameters and moments.
        opt.ZeroGrad();
        ++st.skipped_steps;
        if (++nonfinite_in_a_row >= o_.max_nonfinite_steps) {
          non_finite = true;
          r.stop_reason = "non_finite";
          break;
        }
        continue;
      }
      nonfinite_in_a_row = 0;
      if (o_.max_grad_norm > 0 && grad_norm > o_.max_grad_norm) {
        ScaleGrads(params.parameters(), o_.max_grad_norm / (grad_norm + 1e-6));
        ++st.clipped_steps;
      }
      opt.Step(WarmedUpLr(o_, st.step));
      opt.ZeroGrad();
      ++st.step;
      st.tokens += step_tokens;
      st.loss_curve.push_back(step_loss);
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      if (progress) {
        TrainProgress p;
        p.step = st.step;
        p.max_steps = o_.max_steps;
        p.loss = step_loss;
        p.tokens_per_second = elapsed > 0 ? double(st.tokens) / (elapsed + prior_seconds) : 0;
        const double per_step = elapsed / double(st.step - first_step);
        p.eta_seconds = per_step * double(o_.max_steps - st.step);
        progress(p);
      }
      if (early_stopping && (st.step % o_.eval_every_steps == 0 || st.step == o_.max_steps) &&
          !measure_heldout() && ++st.evals_since_best >= o_.early_stopping_patience) {
        r.stop_reason = "early_stopping";
        break;
      }
      if (o_.checkpoint_every_steps > 0 && st.step % o_.checkpoint_every_steps == 0 && st.step < o_.max_steps) {
        internal::CheckpointState now = st;
        std::lock_guard<std::mutex> lock(gen.mutex());
        now.rng_state = gen.get_state();
        RETURN_IF_ERROR(save(now));
      }
      if (o_.max_minutes > 0 && (elapsed + prior_seconds) / 60.0 >= o_.max_minutes) {
        r.stop_reason = "max_minutes";
        break;
      }
    }
  } catch (const c10::Error& e) {
    return InternalError(std::string("training failed in LibTorch: ") + e.what_without_backtrace());
  }

  r.steps = st.step;
  r.skipped_steps = st.skipped_steps;
  r.clipped_steps = st.clipped_steps;
  if (st.skipped_steps > 0) r.notes.push_back("skipped " + std::to_string(st.skipped_steps) + " steps whose loss or gradient was not finite");
  r.tokens = st.tokens;
  r.loss_curve = st.loss_curve;
  r.wall_seconds = prior_seconds + std::chrono::duration<double>(Clock::now() - t_start).count();
  r.tokens_per_second = r.wall_seconds > 0 ? double(r.tokens) / r.wall_seconds : 0;
  if (stopped) {
    r.completed = false;
    r.peak_rss_mb = PeakRssMb();
    return out;
  }
  if (non_finite) {
    // Resuming would replay the same steps: start the next window afresh.
    r.completed = false;
    r.notes.push_back(std::to_string(o_.max_nonfinite_steps) + " steps in a row had a non-finite loss or gradient after " +
                      std::to_string(st.step) + " good steps; the window ended without a candidate (hint: lower the learning rate or check the examples)");
    r.peak_rss_mb = PeakRssMb();
    if (!checkpoint_path.empty() && PathExists(checkpoint_path)) std::remove(checkpoint_path.c_str());
    return out;
  }
  r.completed = true;
  // A window cut by max_minutes ends between measurements: its last adapter
  // is measured too.
  if (early_stopping && r.stop_reason == "max_minutes" &&
      (st.heldout_curve.empty() || st.heldout_curve.back().first != st.step)) {
    measure_heldout();
  }
  r.kept_step = st.step;
  r.heldout_curve = st.heldout_curve;
  if (early_stopping && !st.best_params.empty() && st.best_step != st.step) {
    RETURN_IF_ERROR(params.Assign(st.best_params));
    r.kept_step = st.best_step;
    r.notes.push_back("early stopping: the candidate is step " + std::to_string(st.best_step) +
                      "'s adapter, the lowest held-out loss (" + std::to_string(st.best_loss) + ") of " +
                      std::to_string(st.heldout_curve.size()) + " measurements");
  }
  const runtime::LoraWeights cand = params.Weights(false);
  r.new_loss_candidate = MeanLoss(fresh, &cand);
  r.unlikelihood_candidate = EvalUnlikelihood(fresh, &cand);
  r.dpo_loss_candidate = EvalDpoLoss(fresh, &cand, &r.dpo_reward_accuracy);
  {
    // The gate judges what the objectives optimise: with undesirable or
    // preference examples in the window, the mean relative change of every
    // objective present (trainer_options.h).
    double ratio_sum = 0;
    int objectives = 0;
    const bool beyond_sft = std::isfinite(r.unlikelihood_parent) || std::isfinite(r.dpo_loss_parent);
    for (auto [par, can] : {std::pair{r.new_loss_parent, r.new_loss_candidate},
                            std::pair{r.unlikelihood_parent, r.unlikelihood_candidate},
                            std::pair{r.dpo_loss_parent, r.dpo_loss_candidate}}) {
      if (!std::isfinite(par) || par <= 0) continue;
      ratio_sum += can / par;
      ++objectives;
    }
    r.objective_score_parent = beyond_sft && objectives ? 1.0 : kNaN;
    r.objective_score_candidate = beyond_sft && objectives ? ratio_sum / objectives : kNaN;
  }
  r.replay_loss_candidate = MeanLoss(replay, &cand);
  r.heldout_loss_candidate = MeanLoss(heldout, &cand);
  r.forgetting_kl = ForgettingKl(cand);
  r.peak_rss_mb = PeakRssMb();
  out.names = params.names();
  out.adapter = params.Snapshot();
  if (!checkpoint_path.empty() && PathExists(checkpoint_path)) std::remove(checkpoint_path.c_str());
  return out;
}

}  // namespace attune::trainer
