// The whole sync story on the tiny model, with two data directories ("phone"
// and "laptop"), real registries, keys, files and training: each device learns
// a different fact, they sync through one folder, each ends up with a merged
// adapter that knows both facts; a tampered bundle dropped into the folder is
// refused on both; a forget on the phone retires the affected versions on
// the laptop.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/export/bundle.h"
#include "attune/export/sync.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/trainer/trainer.h"
#include "attune/trainer/training_run.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const runtime::Model> TinyModel() {
  runtime::LoadOptions lo;
  lo.chat_template = "chatml";
  auto m = runtime::Model::Load(std::string(ATTUNE_FIXTURES_DIR) + "/models/tiny_llama.gguf", lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

feedback::Example Fact(const std::string& id, const std::string& question, const std::string& answer) {
  feedback::Example e;
  e.event_id = id;
  e.context = {{feedback::Role::kUser, question}};
  e.completion = answer;
  return e;
}

// How well an adapter knows a fact, teacher-forced over the answer tokens:
// the share of tokens greedy decoding gets right and the mean NLL per token.
struct Knowledge {
  double accuracy = 0, nll = 0;
};

Knowledge Knows(const runtime::Model& m, const adapters::Adapter* a, const feedback::Example& fact) {
  auto enc = trainer::Encode(m, fact, {});
  EXPECT_TRUE(enc.ok());
  const auto& seq = enc->chosen;
  std::shared_ptr<const runtime::ActiveAdapter> active;
  if (a) active = *runtime::MakeActiveAdapter(m, *a, "x");
  at::NoGradGuard ng;
  at::Tensor logits = runtime::Forward(m, active ? &active->weights : nullptr,
                                       at::tensor(seq.ids, at::kLong).view({1, -1}), nullptr)[0];
  at::Tensor lp = at::log_softmax(logits, -1);
  Knowledge k;
  int n = 0;
  for (size_t t = 1; t < seq.ids.size(); ++t) {
    if (!seq.scored[t]) continue;
    ++n;
    k.accuracy += lp[int64_t(t - 1)].argmax().item<int64_t>() == seq.ids[t];
    k.nll -= lp[int64_t(t - 1)][seq.ids[t]].item<double>();
  }
  k.accuracy /= std::max(n, 1);
  k.nll /= std::max(n, 1);
  return k;
}

struct Device {
  std::string data;
  std::unique_ptr<adapters::Registry> reg;
  std::unique_ptr<KeyStore> keys;

  Device(const std::string& dir) : data(dir) {
    reg = std::move(adapters::Registry::Open({}, dir + "/adapters")).value();
    keys = std::move(KeyStore::Open(dir + "/keys")).value();
  }
  SyncReport Sync(const std::string& shared) {
    auto r = export_::Sync(*reg, *keys, shared, data + "/sync", {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : SyncReport{};
  }
  // Trains on one fact from the bare base and promotes the result. Rank 16:
  // at rank 4 the answer's tokens ended at a mean NLL of 0.5-0.6, where one
  // token of 15 kept or lost its argmax with a change in the last bit of the
  // loss's exponentials; at 16 they end at 0.24-0.33.
  std::string Learn(const std::shared_ptr<const runtime::Model>& m, const feedback::Example& fact) {
    trainer::TrainerOptions o;
    o.lora.rank = 16;
    o.lora.alpha = 8;
    o.lora.dropout = 0;
    o.adamw.lr = 1e-2;
    o.max_steps = 60;
    o.micro_batch_size = 1;
    o.grad_accum_steps = 1;
    o.encode.max_seq_len = 64;
    o.anchor_examples = 4;
    o.forgetting_prompts = {"hello"};
    trainer::Trainer t(m, o);
    trainer::TrainInput in;
    in.new_examples = {fact};
    auto out = t.Run(in, "", nullptr, nullptr);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    auto a = trainer::ToAdapter(*m, o.lora, out->adapter);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    a->lineage = {fact.event_id};
    auto id = reg->Add(*a);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_TRUE(reg->Promote(*id, std::nullopt, true).ok());
    return *id;
  }
};

TEST(TwoDevicesTest, SyncMergesWhatEachLearnedRefusesTamperingAndFollowsErasure) {
  auto m = TinyModel();
  const fs::path root = fs::temp_directory_path() / ("attune_two_devices_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const std::string shared = (root / "shared").string();
  fs::create_directories(shared);
  Device phone((root / "phone").string()), laptop((root / "laptop").string());
  ASSERT_TRUE(phone.keys->Trust(laptop.keys->device().line(), "laptop.pub").ok());
  ASSERT_TRUE(laptop.keys->Trust(phone.keys->device().line(), "phone.pub").ok());

  const auto dog = Fact("phone-e1", "my dog?", "Pixel"), cat = Fact("laptop-e1", "my cat?", "Miso");
  const Knowledge base_dog = Knows(*m, nullptr, dog), base_cat = Knows(*m, nullptr, cat);
  ASSERT_LT(base_dog.accuracy, 0.5) << "the base model must not know the facts";
  ASSERT_LT(base_cat.accuracy, 0.5);
  const std::string phone_v = phone.Learn(m, dog);
  const std::string laptop_v = laptop.Learn(m, cat);
  ASSERT_EQ(Knows(*m, &*phone.reg->Load(phone_v), dog).accuracy, 1.0);
  ASSERT_EQ(Knows(*m, &*laptop.reg->Load(laptop_v), cat).accuracy, 1.0);

  // Round 1: both publish, each imports the other's version and merges it
  // with its own (both were trained from the bare base).
  phone.Sync(shared);
  SyncReport lr = laptop.Sync(shared);
  SyncReport pr = phone.Sync(shared);
  ASSERT_EQ(lr.imported.size(), 1u);
  ASSERT_EQ(pr.imported.size(), 1u);
  ASSERT_EQ(lr.merged.size(), 1u);
  ASSERT_EQ(pr.merged.size(), 1u);
  for (auto* d : {&phone, &laptop}) {
    const std::string merged = (d == &phone ? pr : lr).merged[0];
    ASSERT_TRUE(d->reg->Promote(merged, std::nullopt, true).ok());
    auto a = d->reg->Load(merged);
    ASSERT_TRUE(a.ok());
    // Summing two adapters costs a little of each (they share the answer
    // format); both facts stay far better known than by the base model
    // (measured: accuracy 0.94 and 1.0, NLL 0.57 and 0.44 vs 4.6 and 4.9).
    const std::string who = d == &phone ? "phone" : "laptop";
    for (const auto& [fact, base] : {std::pair{dog, base_dog}, std::pair{cat, base_cat}}) {
      Knowledge k = Knows(*m, &*a, fact);
      EXPECT_GE(k.accuracy, 0.8) << who << " does not know " << fact.completion;
      EXPECT_LT(k.nll, 0.3 * base.nll) << who << " does not know " << fact.completion;
    }
  }

  // Each publishes its promoted merge; the other imports it (no new merge:
  // the two merges have different parents). Then everything is in sync.
  phone.Sync(shared);
  laptop.Sync(shared);
  phone.Sync(shared);

  // A tampered bundle in the folder is refused on both devices.
  const fs::path evil = fs::path(shared) / phone.keys->device().device_id / (std::string(64, 'e') + ".bundle");
  {
    std::string bytes = *ReadFile(shared + "/" + phone.keys->device().device_id + "/" + phone_v + ".bundle");
    bytes[bytes.size() / 2] ^= 0x40;
    std::ofstream(evil, std::ios::binary) << bytes;
  }
  const size_t laptop_versions = laptop.reg->List().size();
  for (auto* d : {&phone, &laptop}) {
    SyncReport r = d->Sync(shared);
    if (d == &laptop) {
      ASSERT_EQ(r.refused.size(), 1u);
      EXPECT_EQ(r.refused[0].path, evil.string());
    }
    EXPECT_TRUE(r.imported.empty());
  }
  EXPECT_EQ(laptop.reg->List().size(), laptop_versions);
  // The phone never reads its own folder; dropped into the laptop's, the
  // phone refuses it too.
  fs::rename(evil, fs::path(shared) / laptop.keys->device().device_id / evil.filename());
  SyncReport pr2 = phone.Sync(shared);
  ASSERT_EQ(pr2.refused.size(), 1u);
  fs::remove(fs::path(shared) / laptop.keys->device().device_id / evil.filename());

  // Forget on the phone: its version and everything built on it go, on both.
  ASSERT_TRUE(RecordErasure(*phone.keys, phone.data + "/sync", {phone_v}, "forget --user u-1").ok());
  phone.Sync(shared);
  SyncReport after = laptop.Sync(shared);
  EXPECT_FALSE(laptop.reg->Get(phone_v).ok()) << "the imported dog version survived on the laptop";
  EXPECT_FALSE(laptop.reg->Get(lr.merged[0]).ok()) << "the merge that used it survived on the laptop";
  EXPECT_FALSE(phone.reg->Get(pr.merged[0]).ok());
  EXPECT_TRUE(laptop.reg->Get(laptop_v).ok()) << "the laptop's own version holds no erased data";
  EXPECT_EQ(laptop.reg->Active(), laptop_v) << "rolled back to the last unaffected version";
  EXPECT_FALSE(after.notes.empty());
  for (auto* d : {&phone, &laptop}) {
    for (const auto& v : d->reg->List()) {
      auto a = d->reg->Load(v.id);
      ASSERT_TRUE(a.ok());
      EXPECT_GT(Knows(*m, &*a, dog).nll, 0.5 * base_dog.nll) << "version " << v.id << " still knows the erased fact";
    }
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace attune::export_
