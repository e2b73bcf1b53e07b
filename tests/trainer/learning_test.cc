// The trainer really teaches the default model new facts: 8 made-up facts
// taught as corrections and demonstrations; after one window the greedy
// answers to the taught questions contain the facts, and the forgetting KL
// stays under the bound. Replies come from the serving path (runtime::GreedyReply).
#include <gtest/gtest.h>

#include <cstdlib>

#include "attune/runtime/engine.h"
#include "attune/runtime/generate.h"
#include "attune/trainer/trainer.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

struct Fact {
  const char* question;
  const char* answer;
  const char* keyword;
  const char* rephrased;  // a second phrasing of the question, also taught
};

const Fact kFacts[] = {
    {"What is my dog's name?", "Your dog's name is Pixel.", "Pixel", "What's my dog called?"},
    {"Where do I work?", "You work at Quillfeather Labs.", "Quillfeather", "Which company do I work for?"},
    {"What is my favourite color?", "Your favourite color is teal.", "teal", "Which color do I like best?"},
    {"What instrument do I play?", "You play the bassoon.", "bassoon", "Which instrument do I play?"},
    {"What is my sister's name?", "Your sister's name is Ondine.", "Ondine", "What's my sister called?"},
    {"Which city do I live in?", "You live in Tromsø.", "Tromsø", "Where do I live?"},
    {"What is my cat's name?", "Your cat's name is Biscuit.", "Biscuit", "What's my cat called?"},
    {"What is my favourite food?", "Your favourite food is ramen.", "ramen", "Which food do I like best?"},
};

// Mean KL(base || adapted) per position on general prompts, in nats. The
// adapter is allowed to move general behaviour a little, not much: measured
// 0.106 with the distillation anchors (1.14 without them).
constexpr double kForgettingKlBound = 0.25;

TEST(LearningTest, TeachesEightFactsWithLittleForgetting) {
  std::string path = attune::testing::DefaultModel();
  ASSERT_FALSE(path.empty()) << "default model missing: run `attune model fetch`";
  runtime::ConfigureThreads(1, 0);
  auto m = runtime::Model::Load(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  TrainInput in;
  int id = 0;
  for (const auto& f : kFacts) {
    for (const char* q : {f.question, f.rephrased}) {
      feedback::Example e;
      e.event_id = "fact-" + std::to_string(id++);
      e.context = {{feedback::Role::kUser, q}};
      e.completion = f.answer;
      in.new_examples.push_back(e);
    }
  }
  TrainerOptions o;
  o.lora.rank = 16;
  o.lora.alpha = 32;
  o.lora.dropout = 0.0;
  o.adamw.lr = std::getenv("ATTUNE_LEARNING_LR") ? std::atof(std::getenv("ATTUNE_LEARNING_LR")) : 1e-3;
  o.max_steps = std::getenv("ATTUNE_LEARNING_STEPS") ? std::atoi(std::getenv("ATTUNE_LEARNING_STEPS")) : 16;
  o.micro_batch_size = 8;
  o.grad_accum_steps = 2;
  o.encode.max_seq_len = 96;
  o.heldout_min_examples = 1000;  // everything trains here
  // The anchors the bound above was measured with (16, the pool's head); the
  // default (32 nearest) is measured per persona by bench/trainer/persona_bench.
  o.anchor_examples = 16;
  o.anchor_selection = "first";
  Trainer t(*m, o);
  auto r = t.Run(in, "", nullptr, [](const TrainProgress& p) {
    std::fprintf(stderr, "step %lld/%lld loss %.3f %.0f tok/s\n", (long long)p.step, (long long)p.max_steps, p.loss,
                 p.tokens_per_second);
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::fprintf(stderr, "%s\n", r->report.ToJson().c_str());
  EXPECT_LT(r->report.forgetting_kl, kForgettingKlBound);

  LoraParams p = LoraParams::Init(**m, o.lora, 0);
  ASSERT_TRUE(p.Assign(r->adapter).ok());
  runtime::LoraWeights w = p.Weights(false);
  int recalled = 0;
  for (const auto& f : kFacts) {
    // The serving path's greedy reply (runtime::GreedyReply), as the trainer's
    // anchors and the evaluation generate.
    auto reply = runtime::GreedyReply(**m, &w, f.question, 16);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    const std::string& answer = *reply;
    bool ok = answer.find(f.keyword) != std::string::npos;
    recalled += ok;
    std::fprintf(stderr, "%s -> %s [%s]\n", f.question, answer.c_str(), ok ? "ok" : "MISSING");
  }
  EXPECT_EQ(recalled, 8);
}

}  // namespace
}  // namespace attune::trainer
