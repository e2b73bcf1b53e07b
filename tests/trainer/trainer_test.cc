#include "attune/trainer/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "attune/runtime/generate.h"
#include "tests/runtime/test_util.h"
#include "trainer/src/anchors.h"
#include "trainer/src/null_space.h"

namespace attune::trainer {
namespace {

using attune::testing::Fixture;

std::shared_ptr<const runtime::Model> TinyModel() {
  runtime::LoadOptions lo;
  lo.chat_template = "chatml";  // the tiny GGUF has a byte-level vocabulary and no template
  auto m = runtime::Model::Load(Fixture("models/tiny_llama.gguf"), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

std::vector<feedback::Example> Examples() {
  std::vector<feedback::Example> v;
  const char* facts[][2] = {{"dog?", "Pixel"}, {"cat?", "Miso"}, {"city?", "Lyon"}, {"car?", "blue"},
                            {"tea?", "green"}, {"sport?", "judo"}};
  for (int i = 0; i < 6; ++i) {
    feedback::Example e;
    e.event_id = "e" + std::to_string(i);
    e.context = {{feedback::Role::kUser, std::string("my ") + facts[i][0]}};
    e.completion = facts[i][1];
    v.push_back(e);
  }
  feedback::Example d;
  d.kind = feedback::ExampleKind::kDpo;
  d.event_id = "pair";
  d.context = {{feedback::Role::kUser, "style?"}};
  d.completion = "short";
  d.rejected = "very long answer";
  v.push_back(d);
  feedback::Example k;
  k.kind = feedback::ExampleKind::kKto;
  k.event_id = "down";
  k.desirable = false;
  k.context = {{feedback::Role::kUser, "joke?"}};
  k.completion = "no";
  v.push_back(k);
  return v;
}

TrainerOptions SmallOptions() {
  TrainerOptions o;
  o.lora.rank = 4;
  o.lora.alpha = 8;
  o.lora.dropout = 0.1;  // exercises the RNG state in checkpoints
  o.max_steps = 6;
  o.micro_batch_size = 2;
  o.grad_accum_steps = 2;
  o.encode.max_seq_len = 64;
  o.seed = 3;
  o.forgetting_prompts = {"hello"};
  return o;
}

// A run with options `o` is refused as invalid, its message naming each
// of `words`.
void ExpectRefused(const std::shared_ptr<const runtime::Model>& m, const TrainInput& in, const TrainerOptions& o,
                   std::initializer_list<std::string> words) {
  auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_FALSE(r.ok()) << *words.begin();
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  for (const std::string& w : words) EXPECT_NE(r.status().message().find(w), std::string::npos) << r.status().message();
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attune_trainer_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(TrainerTest, LearnsTheNewExamplesAndReportsEverything) {
  auto m = TinyModel();
  TrainerOptions o = SmallOptions();
  o.max_steps = 20;
  Trainer t(m, o);
  TrainInput in;
  in.new_examples = Examples();
  auto r = t.Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const TrainReport& rep = r->report;
  EXPECT_TRUE(rep.completed);
  EXPECT_EQ(rep.steps, 20);
  EXPECT_LT(rep.new_loss_candidate, rep.new_loss_parent);
  EXPECT_GE(rep.forgetting_kl, 0.0);
  EXPECT_EQ(rep.loss_curve.size(), 20u);
  EXPECT_GE(rep.dpo_reward_accuracy, 0.0);
  EXPECT_GT(rep.tokens, 0);
  EXPECT_FALSE(r->adapter.empty());
  EXPECT_NE(rep.ToJson().find("\"forgetting_kl\""), std::string::npos);
}

// TrainerOptions::base_products "bf16": the frozen base's products in bf16 (the tiny
// GGUF holds F16 blocks, so its products go through dequantized tiles). The
// first step's loss is the fp32 run's within bf16 rounding, and the run
// learns its examples as much as the fp32 one (held-in loss within 5 %).
TEST(TrainerTest, Bf16BaseLearnsAndItsFirstLossIsTheFp32Ones) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 20;
  o.base_products = "fp32";
  auto fp32 = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(fp32.ok()) << fp32.status().ToString();
  o.base_products = "bf16";
  auto bf16 = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  const TrainReport& a = fp32->report;
  const TrainReport& b = bf16->report;
  EXPECT_FALSE(a.bf16_base);
  EXPECT_TRUE(b.bf16_base);
  ASSERT_EQ(b.loss_curve.size(), 20u);
  EXPECT_NE(b.loss_curve[0], a.loss_curve[0]) << "the bf16 products are not in use";
  EXPECT_NEAR(b.loss_curve[0], a.loss_curve[0], 0.02 * a.loss_curve[0]);
  EXPECT_LT(b.new_loss_candidate, b.new_loss_parent);
  EXPECT_NEAR(b.new_loss_candidate, a.new_loss_candidate, 0.05 * a.new_loss_candidate);
}

// The default, "auto", runs the base's products in bf16 exactly where the
// CPU has AVX512-BF16 or AMX; anything but auto, fp32 and bf16 is refused.
TEST(TrainerTest, BaseProductsAutoFollowsTheCpuAndOthersAreRefused) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 1;
  ASSERT_EQ(o.base_products, "auto");
  auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->report.bf16_base, runtime::CpuHasBf16());
  EXPECT_NE(r->report.ToJson().find(runtime::CpuHasBf16() ? "\"base_products\":\"bf16\"" : "\"base_products\":\"fp32\""),
            std::string::npos);
  o.base_products = "fp16";
  ExpectRefused(m, in, o, {"fp16"});
}

// TrainerOptions::candidate_scale: B moves toward the parent's by the
// factor, A is as trained, and the losses are the scaled adapter's.
TEST(TrainerTest, CandidateScaleInterpolatesEachBTowardTheParent) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 4;
  auto trained = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(trained.ok()) << trained.status().ToString();
  // From nothing (B starts at 0): B is s times the trained one.
  o.candidate_scale = 0.5;
  auto half = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(half.ok()) << half.status().ToString();
  int bs = 0;
  for (size_t i = 0; i < trained->adapter.size(); ++i) {
    const bool is_b = trained->names[i].ends_with(".b");
    bs += is_b;
    const at::Tensor want = is_b ? 0.5 * trained->adapter[i] : trained->adapter[i];
    EXPECT_TRUE(at::allclose(half->adapter[i], want, 1e-5, 1e-6)) << trained->names[i];
  }
  EXPECT_GT(bs, 0);
  EXPECT_GT(half->report.new_loss_candidate, trained->report.new_loss_candidate) << "half the change learns less";
  EXPECT_LT(half->report.new_loss_candidate, half->report.new_loss_parent);
  EXPECT_NE(half->report.ToJson().find("interpolated toward its parent"), std::string::npos);
  // From a parent: B = parent B + s (trained B - parent B).
  in.parent = trained->adapter;
  o.candidate_scale = 1.0;
  auto child = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.candidate_scale = 0.25;
  auto quarter = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(child.ok() && quarter.ok());
  for (size_t i = 0; i < child->adapter.size(); ++i) {
    const at::Tensor want = trained->names[i].ends_with(".b")
                                ? in.parent[i] + 0.25 * (child->adapter[i] - in.parent[i])
                                : child->adapter[i];
    EXPECT_TRUE(at::allclose(quarter->adapter[i], want, 1e-5, 1e-6)) << trained->names[i];
  }
  for (double bad : {0.0, -0.5, 1.5}) {
    o.candidate_scale = bad;
    ExpectRefused(m, in, o, {"candidate_scale"});
  }
}

// The anchor pool's input directions, measured as a window measures them
// (the pool's prompts, no anchors mixed in).
internal::NullSpace PoolNullSpace(const runtime::Model& m, const TrainerOptions& o, double energy) {
  std::vector<std::vector<int64_t>> seqs;
  for (const auto& prompt : internal::AnchorPool()) {
    auto ids = runtime::PromptIds(m, {{"user", prompt}});
    EXPECT_TRUE(ids.ok()) << prompt;
    if (ids.ok()) seqs.emplace_back(ids->begin(), ids->end());
  }
  return internal::NullSpace::Measure(m, o.lora.targets, seqs, energy);
}

// The layer and target of an A tensor's name ("layers.L.T.a"); target -1
// for any other name.
std::pair<size_t, int> LayerAndTargetOfA(const std::string& name) {
  if (!name.ends_with(".a")) return {0, -1};
  const size_t dot = name.find('.', 7);
  const std::string target = name.substr(dot + 1, name.size() - dot - 3);
  for (int t = 0; t < runtime::kNumLoraTargets; ++t) {
    if (target == runtime::LoraTargetName(t)) return {std::stoul(name.substr(7)), t};
  }
  ADD_FAILURE() << "no target in " << name;
  return {0, -1};
}

// TrainerOptions::null_space_energy: after the window every A reads none of
// the directions the general prompts' inputs hold (measured here as the
// window measures them: the anchor pool, no anchors mixed in), the window
// still learns, and out-of-range values are refused.
TEST(TrainerTest, NullSpaceConstraintKeepsEveryAOffTheGeneralPromptsDirections) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 4;
  o.anchor_examples = 0;
  o.base_products = "fp32";
  auto free = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.null_space_energy = 0.9;
  auto held = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(free.ok() && held.ok()) << held.status().ToString();
  EXPECT_NE(held->report.ToJson().find("null-space constraint"), std::string::npos);
  EXPECT_LT(held->report.new_loss_candidate, held->report.new_loss_parent) << "it still learns";
  const auto ns = PoolNullSpace(*m, o, 0.9);
  int checked = 0;
  for (size_t i = 0; i < held->names.size(); ++i) {
    const std::string& name = held->names[i];
    const auto [l, t] = LayerAndTargetOfA(name);
    if (t < 0) continue;
    const at::Tensor u = ns.directions(l, t);
    const double scale = held->adapter[i].abs().max().item<double>();
    EXPECT_LT(held->adapter[i].mm(u).abs().max().item<double>(), 1e-4 * scale) << name;
    EXPECT_GT(free->adapter[i].mm(u).abs().max().item<double>(), 1e-2 * scale) << name << ": unconstrained A reads them";
    ++checked;
  }
  EXPECT_GT(checked, 0);
  // From a parent trained without it: the window measures the parent as it
  // is served (not with its A projected), then trains under the constraint.
  in.parent = free->adapter;
  auto child = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.null_space_energy = 0;
  auto child_free = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(child.ok() && child_free.ok());
  EXPECT_DOUBLE_EQ(child->report.new_loss_parent, child_free->report.new_loss_parent);
  for (double bad : {1.0, -0.1, std::nan("")}) {
    o.null_space_energy = bad;
    ExpectRefused(m, in, o, {"null_space_energy"});
  }
}

// TrainerOptions::contrast_anchors: the prompts the window teaches answers to
// asked about no one ("my dog?" -> "a dog?"; not a preference's or a
// thumbs-down's) join the window as distillation examples, and stay out of
// the null-space measurement: A still reads none of the anchor pool's
// directions, not of a space the window's own questions widened.
TEST(TrainerTest, ContrastAnchorsJoinTheWindowButNotTheNullSpace) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();  // six SFT "my X?", a preference, a thumbs-down
  for (auto& e : in.new_examples) {
    if (e.kind != feedback::ExampleKind::kSft) e.context = {{feedback::Role::kUser, "my " + e.context.back().content}};
  }
  TrainerOptions o = SmallOptions();
  o.max_steps = 4;
  o.anchor_examples = 0;
  o.base_products = "fp32";
  o.null_space_energy = 0.9;
  o.contrast_anchors = 10;
  auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string json = r->report.ToJson();
  EXPECT_NE(json.find("mixed in 6 contrast anchors"), std::string::npos) << json;
  EXPECT_NE(json.find("of " + std::to_string(internal::AnchorPool().size()) + " general sequences"), std::string::npos)
      << json;
  const auto ns = PoolNullSpace(*m, o, 0.9);
  for (size_t i = 0; i < r->names.size(); ++i) {
    const std::string& name = r->names[i];
    const auto [l, t] = LayerAndTargetOfA(name);
    if (t < 0) continue;
    const double scale = r->adapter[i].abs().max().item<double>();
    EXPECT_LT(r->adapter[i].mm(ns.directions(l, t)).abs().max().item<double>(), 1e-4 * scale) << name;
  }
  o.contrast_anchors = 0;  // off
  auto off = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->report.ToJson().find("contrast anchors"), std::string::npos);
}

// TrainerOptions::replay_eval_examples: the replay loss (the gate's replay
// regression check) is measured on at most that many replayed examples,
// evenly spaced, and the notes say so; 0 (or a cap at or above their number)
// measures them all.
TEST(TrainerTest, ReplayLossIsMeasuredOnAtMostReplayEvalExamples) {
  auto m = TinyModel();
  TrainerOptions o = SmallOptions();
  o.max_steps = 2;
  o.anchor_examples = 0;
  std::vector<feedback::Example> old;
  const char* answers[] = {"Pixel", "a very long answer with many words in it", "Lyon", "blue", "seven", "judo"};
  for (int i = 0; i < 6; ++i) {
    feedback::Example e;
    e.event_id = "old" + std::to_string(i);
    e.context = {{feedback::Role::kUser, "old question " + std::to_string(i) + "?"}};
    e.completion = answers[i];
    old.push_back(e);
  }
  auto run = [&](const std::vector<feedback::Example>& replay, int64_t cap) {
    TrainerOptions t = o;
    t.replay_eval_examples = cap;
    TrainInput in;
    in.new_examples = Examples();
    in.replay_examples = replay;
    auto r = Trainer(m, t).Run(in, "", nullptr, nullptr);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->report : TrainReport{};
  };
  const TrainReport all = run(old, 0), six = run(old, 6), two = run(old, 2);
  EXPECT_EQ(all.replay_examples, 6);
  EXPECT_EQ(two.replay_examples, 6);  // all six still train
  EXPECT_DOUBLE_EQ(six.replay_loss_parent, all.replay_loss_parent);
  const std::string notes = two.ToJson();
  EXPECT_NE(notes.find("replay loss measured on 2 of the 6 replayed examples"), std::string::npos) << notes;
  EXPECT_EQ(all.ToJson().find("replay loss measured on"), std::string::npos);
  // The two measured are the first and the fourth: the parent's loss on them
  // is a window's that replays just those two.
  const TrainReport subset = run({old[0], old[3]}, 0);
  EXPECT_NEAR(two.replay_loss_parent, subset.replay_loss_parent, 1e-6);
  EXPECT_GT(std::abs(two.replay_loss_parent - all.replay_loss_parent), 1e-4);
  EXPECT_TRUE(std::isfinite(two.replay_loss_candidate));
}

// TrainerOptions::neftune_alpha: the noise reaches the window's training (the
// same seed gives another adapter, and the notes say so); a negative, NaN or
// infinite alpha is refused by name.
TEST(TrainerTest, NeftuneNoiseChangesTheTrainingAndIsChecked) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 3;
  auto clean = Trainer(m, o).Run(in, "", nullptr, nullptr);
  auto again = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.neftune_alpha = 15;
  auto noisy = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(clean.ok() && again.ok() && noisy.ok()) << noisy.status().ToString();
  double same = 0, moved = 0;
  for (size_t i = 0; i < clean->adapter.size(); ++i) {
    same = std::max(same, (again->adapter[i] - clean->adapter[i]).abs().max().item<double>());
    moved = std::max(moved, (noisy->adapter[i] - clean->adapter[i]).abs().max().item<double>());
  }
  EXPECT_EQ(same, 0.0) << "the same seed without noise trains the same adapter";
  EXPECT_GT(moved, 0.0);
  EXPECT_NE(noisy->report.ToJson().find("NEFTune, alpha 15"), std::string::npos) << noisy->report.ToJson();
  EXPECT_EQ(clean->report.ToJson().find("NEFTune"), std::string::npos);
  for (double bad : {-1.0, std::nan(""), HUGE_VAL}) {
    o.neftune_alpha = bad;
    ExpectRefused(m, in, o, {"neftune_alpha"});
  }
}

// TrainerOptions::question_dropout_*: the copies train (another adapter from
// the same seed, the notes count them), only of the new examples that train:
// the held-out slice (whose loss the gate reads) and the report's count of
// new examples are the same as without, and a skipped example gets none;
// bad values are refused by name.
TEST(TrainerTest, QuestionDropoutTrainsCopiesOfTheTrainedQuestionsOnly) {
  auto m = TinyModel();
  TrainInput in;
  for (int i = 0; i < 20; ++i) {
    feedback::Example e;
    e.event_id = "q" + std::to_string(i);
    e.context = {{feedback::Role::kUser, "what is my pet number " + std::to_string(i) + " called?"}};
    e.completion = "Pixel" + std::to_string(i);
    in.new_examples.push_back(e);
  }
  feedback::Example empty;  // skipped (nothing to learn): no copies either
  empty.event_id = "empty";
  empty.context = {{feedback::Role::kUser, "what is my empty answer called?"}};
  in.new_examples.push_back(empty);
  TrainerOptions o = SmallOptions();
  o.max_steps = 3;
  auto plain = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.question_dropout_copies = 2;
  auto dropped = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(plain.ok() && dropped.ok()) << dropped.status().ToString();
  EXPECT_EQ(plain->report.heldout_examples, 2);
  EXPECT_EQ(dropped->report.heldout_examples, 2);
  EXPECT_EQ(dropped->report.new_examples, 18);
  EXPECT_EQ(dropped->report.skipped_examples, 1);
  EXPECT_DOUBLE_EQ(dropped->report.heldout_loss_parent, plain->report.heldout_loss_parent)
      << "the held-out slice is the same examples, none of them copied";
  EXPECT_NE(dropped->report.ToJson().find("word dropout: 36 copies of 18 questions (p 0.3, weight 0.5, 6 words or more)"),
            std::string::npos)
      << dropped->report.ToJson();
  EXPECT_EQ(plain->report.ToJson().find("word dropout"), std::string::npos);
  double moved = 0;
  for (size_t i = 0; i < plain->adapter.size(); ++i) {
    moved = std::max(moved, (dropped->adapter[i] - plain->adapter[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 0.0);
  TrainerOptions bad = o;
  for (int64_t n : {int64_t(-1), int64_t(17)}) {
    bad.question_dropout_copies = n;
    ExpectRefused(m, in, bad, {"question_dropout_copies"});
  }
  bad = o;
  for (double p : {0.0, 1.0, std::nan("")}) {
    bad.question_dropout_p = p;
    ExpectRefused(m, in, bad, {"question_dropout_p"});
  }
  bad = o;
  for (double w : {0.0, -1.0, HUGE_VAL}) {
    bad.question_dropout_weight = w;
    ExpectRefused(m, in, bad, {"question_dropout_weight"});
  }
  bad = o;
  for (int64_t n : {int64_t(2), int64_t(1001)}) {
    bad.question_dropout_min_words = n;
    ExpectRefused(m, in, bad, {"question_dropout_min_words"});
  }
  o.question_dropout_min_words = 8;  // the questions have 7 words
  auto none = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_NE(none->report.ToJson().find("word dropout: 0 copies of 0 questions"), std::string::npos)
      << none->report.ToJson();
}

// graph_memory_mb: a negative, NaN or infinite budget is refused by name;
// a budget says in the notes how many layers kept their graph.
TEST(TrainerTest, GraphMemoryIsCheckedAndReported) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  for (double mb : {-1.0, std::nan(""), HUGE_VAL}) {
    TrainerOptions o = SmallOptions();
    o.graph_memory_mb = mb;
    ExpectRefused(m, in, o, {"graph_memory_mb"});
  }
  TrainerOptions o = SmallOptions();
  o.graph_memory_mb = 1e6;
  auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string all = std::to_string(m->layers().size());
  const std::string want = "kept the graph of their top " + all + " of " + all + " layers";
  EXPECT_NE(r->report.ToJson().find(want), std::string::npos) << r->report.ToJson();
  o.graph_memory_mb = 0;
  auto off = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->report.ToJson().find("graph_memory_mb"), std::string::npos);
}

TEST(TrainerTest, AnUnknownLearningRateScheduleIsRefused) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 1;
  o.lr_schedule = "cosine";
  ExpectRefused(m, in, o, {"lr_schedule", "cosine"});
  o.lr_schedule = "linear";
  auto ok = Trainer(m, o).Run(in, "", nullptr, nullptr);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

// TrainerOptions::threads: the run computes on that many threads (LibTorch's
// and OpenBLAS's, whichever products it runs), and the process's counts come
// back afterwards; a negative count is refused.
TEST(TrainerTest, ThreadsHoldForTheRunAndAreRestored) {
  using GetThreads = int (*)();
  auto blas = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  ASSERT_NE(blas, nullptr) << "the BLAS in use is not OpenBLAS";
  runtime::ConfigureThreads(2, 2);
  const int torch_before = at::get_num_threads(), blas_before = blas();
  ASSERT_GE(blas_before, 2) << "needs 2 cores";
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  o.max_steps = 2;
  o.threads = 1;
  std::vector<std::pair<int, int>> seen;
  auto r = Trainer(m, o).Run(in, "", nullptr, [&](const TrainProgress&) { seen.emplace_back(at::get_num_threads(), blas()); });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_FALSE(seen.empty());
  for (const auto& [torch, openblas] : seen) {
    EXPECT_EQ(torch, 1);
    EXPECT_EQ(openblas, 1);
  }
  EXPECT_EQ(at::get_num_threads(), torch_before);
  EXPECT_EQ(blas(), blas_before);
  o.threads = -1;
  ExpectRefused(m, in, o, {"threads"});
}

// N steps straight == N/2 steps, stop, resume for the rest.
TEST(TrainerTest, StopAndResumeGivesTheSameAdapter) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  Trainer straight(m, SmallOptions());
  auto a = straight.Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(a.ok());

  std::string ck = TempPath("resume.ck");
  int micro_steps = 0;
  Trainer first(m, SmallOptions());
  // Stop inside step 4 (after 3 full steps of 2 micro-steps and one more).
  auto b1 = first.Run(in, ck, [&] { return ++micro_steps > 7; }, nullptr);
  ASSERT_TRUE(b1.ok()) << b1.status().ToString();
  EXPECT_FALSE(b1->report.completed);
  EXPECT_EQ(b1->report.steps, 3);
  ASSERT_TRUE(PathExists(ck));
  Trainer second(m, SmallOptions());
  auto b2 = second.Run(in, ck, nullptr, nullptr);
  ASSERT_TRUE(b2.ok()) << b2.status().ToString();
  EXPECT_TRUE(b2->report.completed);
  ASSERT_EQ(a->adapter.size(), b2->adapter.size());
  for (size_t i = 0; i < a->adapter.size(); ++i) {
    EXPECT_TRUE(at::allclose(a->adapter[i], b2->adapter[i], 1e-5, 1e-6)) << a->names[i];
  }
  EXPECT_EQ(a->report.loss_curve.size(), b2->report.loss_curve.size());
  EXPECT_FALSE(PathExists(ck)) << "a completed run removes its checkpoint";
}

TEST(TrainerTest, ExamplesWithoutTrainableTokensAreAClearError) {
  auto m = TinyModel();
  Trainer t(m, SmallOptions());
  TrainInput in;
  feedback::Example e;
  e.event_id = "empty";
  e.context = {{feedback::Role::kUser, "hi"}};
  in.new_examples = {e};
  auto r = t.Run(in, "", nullptr, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("empty"), std::string::npos) << r.status().message();
  EXPECT_FALSE(t.Run(TrainInput{}, "", nullptr, nullptr).ok());
}

TEST(TrainerTest, RefusesACheckpointOfAnotherRunOrACorruptOne) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  std::string ck = TempPath("other.ck");
  Trainer t(m, SmallOptions());
  ASSERT_TRUE(t.Run(in, ck, [] { return true; }, nullptr).ok());  // stops at once, writes the checkpoint
  ASSERT_TRUE(PathExists(ck));
  TrainerOptions other = SmallOptions();
  other.lora.rank = 8;
  auto r = Trainer(m, other).Run(in, ck, nullptr, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  auto bytes = ReadFile(ck);
  ASSERT_TRUE(bytes.ok());
  std::string broken = *bytes;
  broken[broken.size() - 10] ^= 0x55;
  ASSERT_TRUE(WriteFileAtomic(ck, broken).ok());
  auto c = Trainer(m, SmallOptions()).Run(in, ck, nullptr, nullptr);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find(ck), std::string::npos);
  std::filesystem::remove(ck);
}

TEST(TrainerTest, ParentAdapterIsTheStartingPointAndL2PullsTowardIt) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  TrainerOptions o = SmallOptions();
  auto first = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(first.ok());
  in.parent = first->adapter;
  in.parent_version = "v1";
  auto free_run = Trainer(m, o).Run(in, "", nullptr, nullptr);
  o.l2_to_parent = 100.0;
  auto pulled = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(free_run.ok() && pulled.ok());
  EXPECT_NEAR(free_run->report.new_loss_parent, first->report.new_loss_candidate, 1e-4);
  double d_free = 0, d_pulled = 0;
  for (size_t i = 0; i < in.parent.size(); ++i) {
    d_free += (free_run->adapter[i] - in.parent[i]).pow(2).sum().item<double>();
    d_pulled += (pulled->adapter[i] - in.parent[i]).pow(2).sum().item<double>();
  }
  EXPECT_LT(d_pulled, d_free);
}

TEST(TrainerTest, HeldOutSliceRotatesAndIsScored) {
  auto m = TinyModel();
  TrainInput in;
  for (int i = 0; i < 4; ++i) {
    for (auto e : Examples()) {
      e.event_id += "-" + std::to_string(i);
      in.new_examples.push_back(e);
    }
  }
  TrainerOptions o = SmallOptions();
  o.heldout_min_examples = 20;
  o.heldout_every = 8;
  auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.heldout_examples, 4);
  EXPECT_TRUE(std::isfinite(r->report.heldout_loss_candidate));
  o.heldout_min_examples = 100;
  auto all = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->report.heldout_examples, 0);
  EXPECT_NE(all->report.ToJson().find("all train"), std::string::npos);
}

// With LoRA on the MLP only, the checkpointed backward of the first layer
// (whose input needs no gradient) asked autograd to backpropagate through
// its attention, which has no trainable path: "element 0 of tensors does
// not require grad". Every window with such targets failed.
TEST(TrainerTest, CheckpointedTrainingWorksForEverySubsetOfTargets) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  for (const char* targets : {"gate,up,down", "down", "q,k,v,o", "q"}) {
    TrainerOptions o = SmallOptions();
    o.lora.targets = *ParseTargets(targets);
    o.lora.dropout = 0;
    // checkpointed; not; checkpointed with the top layers' graphs kept
    for (auto [checkpointing, graph_mb] : {std::pair{true, 0.0}, std::pair{false, 0.0}, std::pair{true, 1e6}}) {
      o.gradient_checkpointing = checkpointing;
      o.graph_memory_mb = graph_mb;
      auto r = Trainer(m, o).Run(in, "", nullptr, nullptr);
      ASSERT_TRUE(r.ok()) << targets << (checkpointing ? " checkpointed: " : ": ") << graph_mb << " "
                          << r.status().ToString();
      EXPECT_LT(r->report.new_loss_candidate, r->report.new_loss_parent) << targets;
    }
  }
}

// The report says where a run's time went: every phase took some, those
// before the candidate's measurement fit in wall_seconds, and the JSON
// carries them.
TEST(TrainerTest, ThePhasesOfARunFitItsTime) {
  auto m = TinyModel();
  TrainInput in;
  in.new_examples = Examples();
  auto r = Trainer(m, SmallOptions()).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const TrainReport& rep = r->report;
  EXPECT_GT(rep.prepare_seconds, 0);
  EXPECT_GT(rep.parent_seconds, 0);
  EXPECT_GT(rep.steps_seconds, 0);
  EXPECT_GT(rep.candidate_seconds, 0);
  EXPECT_LE(rep.prepare_seconds + rep.parent_seconds + rep.steps_seconds, rep.wall_seconds);
  auto j = nlohmann::json::parse(rep.ToJson());
  EXPECT_EQ(j["phase_seconds"]["steps"].get<double>(), rep.steps_seconds);
  EXPECT_EQ(j["phase_seconds"]["candidate"].get<double>(), rep.candidate_seconds);
}

// The report counts the padding of the micro-batches: a micro-batch is as
// long as its longest sequence. One micro-batch of all sixteen examples
// pads each to the longest; micro-batches of one pad nothing. It also counts
// the slots the prefix the examples share (the template's turn before the
// question) saved: fifteen rows' worth per micro-batch of sixteen, none for
// one.
TEST(TrainerTest, TheReportCountsTheMicroBatchesPaddingAndSharedPrefix) {
  auto m = TinyModel();
  TrainInput in;
  TrainerOptions o = SmallOptions();
  o.anchor_examples = 0;
  o.encode.max_seq_len = 256;  // none truncated
  int64_t sum = 0, longest = 0;
  std::vector<int64_t> first;
  size_t common = SIZE_MAX;
  for (int i = 0; i < 16; ++i) {
    feedback::Example e;
    e.event_id = "len" + std::to_string(i);
    e.context = {{feedback::Role::kUser, "question " + std::to_string(i)}};
    for (int w = 0; w <= (i * 7) % 16; ++w) e.completion += "w ";
    auto enc = Encode(*m, e, o.encode);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    sum += int64_t(enc->chosen.ids.size());
    if (first.empty()) first = enc->chosen.ids;
    size_t same = 0;
    while (same < first.size() && same < enc->chosen.ids.size() && first[same] == enc->chosen.ids[same]) ++same;
    common = std::min(common, same);
    longest = std::max(longest, int64_t(enc->chosen.ids.size()));
    in.new_examples.push_back(e);
  }
  ASSERT_GT(16 * longest, sum);  // the lengths differ
  ASSERT_GE(int64_t(common), kMinSharedPrefix);
  ASSERT_LT(int64_t(common), longest);
  o.lora.dropout = 0;  // with dropout the rows would share their masks: nothing shared
  o.micro_batch_size = 16;
  o.grad_accum_steps = 1;
  o.max_steps = 2;
  auto whole = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->report.tokens, 2 * sum);
  EXPECT_EQ(whole->report.padding_tokens, 2 * (16 * longest - sum));
  EXPECT_EQ(whole->report.shared_prefix_tokens, 2 * 15 * int64_t(common));
  o.micro_batch_size = 1;
  auto single = Trainer(m, o).Run(in, "", nullptr, nullptr);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  EXPECT_EQ(single->report.padding_tokens, 0);
  EXPECT_EQ(single->report.shared_prefix_tokens, 0);
}

// Four copies of Examples() (24 SFT examples): every eighth is held out.
TrainInput WithHeldOutSlice() {
  TrainInput in;
  for (int i = 0; i < 4; ++i) {
    for (auto e : Examples()) {
      e.event_id += "-" + std::to_string(i);
      in.new_examples.push_back(e);
    }
  }
  return in;
}

TrainerOptions EarlyStoppingOptions() {
  TrainerOptions o = SmallOptions();
  o.heldout_min_examples = 20;
  o.heldout_every = 8;
  o.max_steps = 40;
  o.adamw.lr = 2e-2;  // overfits the tiny model: the held-out loss turns up
  o.early_stopping_patience = 3;
  o.eval_every_steps = 2;
  return o;
}

TEST(TrainerTest, EarlyStoppingKeepsTheAdapterOfTheLowestHeldOutLoss) {
  auto m = TinyModel();
  const TrainerOptions o = EarlyStoppingOptions();
  auto r = Trainer(m, o).Run(WithHeldOutSlice(), "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const TrainReport& rep = r->report;
  ASSERT_EQ(rep.stop_reason, "early_stopping") << rep.ToJson();
  EXPECT_LT(rep.steps, o.max_steps);
  ASSERT_GE(rep.heldout_curve.size(), size_t(o.early_stopping_patience + 1));
  size_t best = 0;
  for (size_t i = 0; i < rep.heldout_curve.size(); ++i) {
    EXPECT_EQ(rep.heldout_curve[i].first, int64_t(i + 1) * o.eval_every_steps);
    if (rep.heldout_curve[i].second < rep.heldout_curve[best].second) best = i;
  }
  // It stopped after `patience` measurements without a new lowest.
  EXPECT_EQ(rep.heldout_curve.size() - 1 - best, size_t(o.early_stopping_patience));
  EXPECT_EQ(rep.kept_step, rep.heldout_curve[best].first);
  EXPECT_LT(rep.kept_step, rep.steps);
  // The candidate is that step's adapter: its held-out loss is that measurement.
  EXPECT_NEAR(rep.heldout_loss_candidate, rep.heldout_curve[best].second, 1e-6);
  EXPECT_NE(rep.ToJson().find("early stopping: the candidate is step " + std::to_string(rep.kept_step)), std::string::npos);

  // Cut by max_minutes between measurements: the last adapter is measured too.
  TrainerOptions timed = o;
  timed.max_minutes = 1e-9;
  auto cut = Trainer(m, timed).Run(WithHeldOutSlice(), "", nullptr, nullptr);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->report.stop_reason, "max_minutes");
  ASSERT_EQ(cut->report.heldout_curve.size(), 1u);
  EXPECT_EQ(cut->report.heldout_curve[0].first, 1);
  EXPECT_EQ(cut->report.kept_step, 1);
}

TEST(TrainerTest, EarlyStoppingResumesWithItsMeasurementsAndBestAdapter) {
  auto m = TinyModel();
  const TrainerOptions o = EarlyStoppingOptions();
  auto straight = Trainer(m, o).Run(WithHeldOutSlice(), "", nullptr, nullptr);
  ASSERT_TRUE(straight.ok());
  const std::string ck = TempPath("early.ck");
  int micro_steps = 0;
  // Stop inside the step after the first measurement without a new lowest
  // (two micro-batches a step), so the resumed run must bring back both the
  // best adapter and the count. Where the lowest falls depends on the CPU's
  // rounding (step 28 on an AVX-512 CPU, 22 on an AVX2 one), so the cut
  // follows the uninterrupted run.
  const int64_t cut = straight->report.kept_step + o.eval_every_steps;
  ASSERT_EQ(straight->report.stop_reason, "early_stopping") << straight->report.ToJson();
  ASSERT_LT(cut, straight->report.steps) << "the interruption must come before the window ends";
  auto first =
      Trainer(m, o).Run(WithHeldOutSlice(), ck, [&] { return ++micro_steps > 2 * cut + 1; }, nullptr);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_FALSE(first->report.completed);
  ASSERT_EQ(first->report.steps, cut);
  ASSERT_TRUE(PathExists(ck));
  auto second = Trainer(m, o).Run(WithHeldOutSlice(), ck, nullptr, nullptr);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->report.stop_reason, straight->report.stop_reason);
  EXPECT_EQ(second->report.kept_step, straight->report.kept_step);
  ASSERT_EQ(second->report.heldout_curve.size(), straight->report.heldout_curve.size());
  for (size_t i = 0; i < straight->report.heldout_curve.size(); ++i) {
    EXPECT_NEAR(second->report.heldout_curve[i].second, straight->report.heldout_curve[i].second, 1e-5) << i;
  }
  ASSERT_EQ(second->adapter.size(), straight->adapter.size());
  for (size_t i = 0; i < straight->adapter.size(); ++i) {
    EXPECT_TRUE(at::allclose(second->adapter[i], straight->adapter[i], 1e-5, 1e-6)) << straight->names[i];
  }
}

TEST(TrainerTest, EarlyStoppingWithoutAHeldOutSliceIsOffAndSaysSo) {
  auto m = TinyModel();
  TrainerOptions o = EarlyStoppingOptions();
  o.heldout_min_examples = 100;
  o.max_steps = 6;
  auto r = Trainer(m, o).Run(WithHeldOutSlice(), "", nullptr, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.stop_reason, "max_steps");
  EXPECT_TRUE(r->report.heldout_curve.empty());
  EXPECT_EQ(r->report.kept_step, 6);
  EXPECT_NE(r->report.ToJson().find("early stopping is off"), std::string::npos);
  o.eval_every_steps = 0;
  ExpectRefused(m, WithHeldOutSlice(), o, {"eval_every_steps"});
}

// The held-out loss of a candidate that early stopping kept was taken from
// the measurement of the kept step, also when candidate_scale had moved the
// candidate since: the report gave the loss of an adapter it did not return.
TEST(TrainerTest, InterpolatedCandidateReportsItsOwnHeldOutLossNotTheKeptMeasurement) {
  auto m = TinyModel();
  TrainerOptions o = EarlyStoppingOptions();
  o.candidate_scale = 0.5;
  auto r = Trainer(m, o).Run(WithHeldOutSlice(), "", nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const TrainReport& rep = r->report;
  const auto kept = std::find_if(rep.heldout_curve.begin(), rep.heldout_curve.end(),
                                 [&](const auto& e) { return e.first == rep.kept_step; });
  ASSERT_NE(kept, rep.heldout_curve.end()) << rep.ToJson();
  // Half the learned change is another adapter than the kept one: another
  // held-out loss (higher or lower, as the CPU's rounding steers the run).
  EXPECT_GT(std::abs(rep.heldout_loss_candidate - kept->second), 1e-4) << rep.ToJson();
  EXPECT_LT(rep.heldout_loss_candidate, rep.heldout_loss_parent) << rep.ToJson();
  // The loss reported is the returned adapter's: measured again, as the
  // parent of a window on the same events.
  TrainInput again = WithHeldOutSlice();
  again.parent = r->adapter;
  TrainerOptions one = SmallOptions();
  one.heldout_min_examples = o.heldout_min_examples;
  one.heldout_every = o.heldout_every;
  one.max_steps = 1;
  auto measured = Trainer(m, one).Run(again, "", nullptr, nullptr);
  ASSERT_TRUE(measured.ok()) << measured.status().ToString();
  EXPECT_NEAR(measured->report.heldout_loss_parent, rep.heldout_loss_candidate, 1e-5) << measured->report.ToJson();
}

}  // namespace
}  // namespace attune::trainer
