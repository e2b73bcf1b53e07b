#include "attune/adapters/registry.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "attune/adapters/health.h"
#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::PassingInput;
using testing::ScratchDir;
using testing::TinyBase;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(RegistryOptions o = {}) {
    registry_.reset();
    o.clock = [this] { return ++now_; };
    auto r = Registry::Open(o, dir_.path() + "/adapters");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    registry_ = std::move(r).value();
  }

  std::string AddOk(uint32_t seed, const std::string& parent = "") {
    Adapter a = MakeAdapter(seed);
    a.parent_version = parent;
    auto id = registry_->Add(a);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : "";
  }

  // Adds and promotes through the gate.
  std::string AddActive(uint32_t seed) {
    std::string id = AddOk(seed, registry_->Active());
    auto p = registry_->Promote(id, PassingInput(registry_->Active()), false);
    EXPECT_TRUE(p.ok() && p->promoted) << p.status().ToString();
    return id;
  }

  VersionState StateOf(const std::string& id) { return registry_->Get(id)->state; }

  ScratchDir dir_;
  int64_t now_ = 1000;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, NewRegistryIsEmptyAndConsistent) {
  EXPECT_TRUE(registry_->List().empty());
  EXPECT_EQ(registry_->Active(), "");
  EXPECT_TRUE(registry_->report().ok());
  EXPECT_TRUE(registry_->report().warnings.empty());
}

TEST_F(RegistryTest, AddStoresACandidateThatLoadsBack) {
  std::string id = AddOk(1);
  ASSERT_EQ(id.size(), 64u);
  auto info = registry_->Get(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, VersionState::kCandidate);
  EXPECT_EQ(info->label(), "v1");
  EXPECT_EQ(info->metrics.at("train.loss"), MakeAdapter(1).metrics.at("train.loss"));
  auto loaded = registry_->Load(id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, MakeAdapter(1));
}

TEST_F(RegistryTest, AddingTheSameAdapterTwiceIsIdempotent) {
  std::string a = AddOk(1);
  std::string b = AddOk(1);
  EXPECT_EQ(a, b);
  EXPECT_EQ(registry_->List().size(), 1u);
}

TEST_F(RegistryTest, ResolvesLabelsPrefixesAndIds) {
  std::string id = AddOk(1);
  AddOk(2);
  EXPECT_EQ(*registry_->Resolve("v1"), id);
  EXPECT_EQ(*registry_->Resolve(id), id);
  EXPECT_EQ(*registry_->Resolve(id.substr(0, 12)), id);
  EXPECT_EQ(registry_->Resolve("v9").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->Resolve("xyz").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RegistryTest, PromoteThroughGateActivates) {
  std::string id = AddOk(1);
  auto p = registry_->Promote("v1", PassingInput(), false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->promoted);
  EXPECT_EQ(registry_->Active(), id);
  auto h = registry_->History();
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].cause, ActivationCause::kPromote);
  EXPECT_EQ(h[0].from_version, "");
  EXPECT_EQ(h[0].to_version, id);
}

TEST_F(RegistryTest, GateFailureRejectsWithReasonAndKeepsActive) {
  std::string v1 = AddActive(1);
  std::string v2 = AddOk(2, v1);
  GateInput bad = PassingInput(v1);
  bad.forgetting_kl = 5;
  auto p = registry_->Promote(v2, bad, false);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->promoted);
  EXPECT_EQ(registry_->Active(), v1);
  auto info = registry_->Get(v2);
  EXPECT_EQ(info->state, VersionState::kRejected);
  EXPECT_NE(info->reason.find("forgetting KL"), std::string::npos) << info->reason;
  // Not a candidate any more: a gated promotion is refused.
  EXPECT_EQ(registry_->Promote(v2, PassingInput(v1), false).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(RegistryTest, ForcePromotesRejectedVersionAndIsRecorded) {
  std::string v1 = AddActive(1);
  std::string v2 = AddOk(2, v1);
  GateInput bad = PassingInput(v1);
  bad.new_loss = 10;
  ASSERT_FALSE(registry_->Promote(v2, bad, false)->promoted);
  auto p = registry_->Promote(v2, std::nullopt, true);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->promoted && p->forced);
  EXPECT_EQ(registry_->Active(), v2);
  EXPECT_EQ(registry_->History().back().cause, ActivationCause::kForce);
  EXPECT_EQ(StateOf(v1), VersionState::kRetired);
}

TEST_F(RegistryTest, PromoteUsesReportStoredInTheAdapter) {
  Adapter a = MakeAdapter(1);
  StoreGateInput(PassingInput(), a.metrics, a.training_config);
  auto id = registry_->Add(a);
  ASSERT_TRUE(id.ok());
  auto p = registry_->Promote(*id, std::nullopt, false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->promoted);
}

TEST_F(RegistryTest, PromoteWithoutReportNeedsForce) {
  std::string id = AddOk(1);
  auto p = registry_->Promote(id, std::nullopt, false);
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(p.status().message().find("force"), std::string::npos);
  EXPECT_EQ(StateOf(id), VersionState::kCandidate);
}

TEST_F(RegistryTest, StaleEvaluationIsAborted) {
  AddActive(1);
  std::string v2 = AddOk(2);
  auto p = registry_->Promote(v2, PassingInput(""), false);  // measured against no adapter
  EXPECT_EQ(p.status().code(), StatusCode::kAborted);
  EXPECT_EQ(StateOf(v2), VersionState::kCandidate);
}

TEST_F(RegistryTest, RollbackReturnsToPreviousActive) {
  std::string v1 = AddActive(1);
  std::string v2 = AddActive(2);
  std::string v3 = AddActive(3);
  RollbackRequest req;
  auto r = registry_->Rollback(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, v2);
  EXPECT_EQ(StateOf(v3), VersionState::kRejected);
  EXPECT_NE(registry_->Get(v3)->reason.find("rollback-manual"), std::string::npos);
  // Again: past the rejected v3, back to v1.
  EXPECT_EQ(*registry_->Rollback(req), v1);
  // Again: no retired version left, so no adapter at all.
  EXPECT_EQ(*registry_->Rollback(req), "");
  EXPECT_EQ(registry_->Active(), "");
  EXPECT_EQ(registry_->Rollback(req).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry_->History().size(), 6u);
}

TEST_F(RegistryTest, RollbackToNamedVersion) {
  std::string v1 = AddActive(1);
  AddActive(2);
  AddActive(3);
  RollbackRequest req;
  req.target = "v1";
  EXPECT_EQ(*registry_->Rollback(req), v1);
  EXPECT_EQ(registry_->History().back().cause, ActivationCause::kRollbackManual);
}

TEST_F(RegistryTest, RollbackRefusesVersionThatWasNeverActive) {
  AddActive(1);
  AddOk(2);
  RollbackRequest req;
  req.target = "v2";
  EXPECT_EQ(registry_->Rollback(req).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(RegistryTest, RollbackWithStaleExpectationIsAborted) {
  std::string v1 = AddActive(1);
  AddActive(2);
  RollbackRequest req;
  req.expected_active = v1;
  EXPECT_EQ(registry_->Rollback(req).status().code(), StatusCode::kAborted);
}

TEST_F(RegistryTest, AutoRollbackOnNonFiniteLogits) {
  std::string v1 = AddActive(1);
  std::string v2 = AddActive(2);
  HealthMonitor monitor;
  monitor.SetActive(v2, v1);
  auto r = ApplyVerdict(*registry_, monitor.RecordNonFinite(v2));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, v1);
  EXPECT_EQ(registry_->History().back().cause, ActivationCause::kRollbackNan);
  EXPECT_EQ(StateOf(v2), VersionState::kRejected);
}

TEST_F(RegistryTest, AutoRollbackOnThumbsDownStreak) {
  std::string v1 = AddActive(1);
  HealthOptions o;
  o.window = 20;
  o.min_baseline_ratings = 20;
  HealthMonitor monitor(o);
  monitor.SetActive(v1, "");
  for (int i = 0; i < 40; ++i) (void)monitor.RecordRating(v1, i % 10 == 0);  // 10 %
  std::string v2 = AddActive(2);
  monitor.SetActive(v2, v1);
  HealthVerdict verdict;
  for (int i = 0; i < 20 && !verdict.rollback; ++i) verdict = monitor.RecordRating(v2, i % 2 == 0);  // 50 %
  ASSERT_TRUE(verdict.rollback);
  auto r = ApplyVerdict(*registry_, verdict);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, v1);
  EXPECT_EQ(registry_->History().back().cause, ActivationCause::kRollbackThumbsDown);
  EXPECT_NE(registry_->History().back().note.find("thumbs-down rate 50.0 %"), std::string::npos);
}

TEST_F(RegistryTest, StaysConsistentAcrossReopen) {
  std::string v1 = AddActive(1);
  std::string v2 = AddActive(2);
  ASSERT_TRUE(registry_->Pin(v1).ok());
  Reopen();
  EXPECT_EQ(registry_->Active(), v2);
  EXPECT_TRUE(registry_->Get(v1)->pinned);
  EXPECT_EQ(registry_->History().size(), 2u);
  EXPECT_TRUE(registry_->Check(true).ok());
}

TEST_F(RegistryTest, TwoOpenRegistriesSeeEachOthersMutations) {
  std::string v1 = AddOk(1);
  auto other = Registry::Open(RegistryOptions{}, dir_.path() + "/adapters");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  ASSERT_TRUE((*other)->Promote("v1", PassingInput(), false).ok());
  // This object has not looked yet...
  EXPECT_EQ(registry_->Active(), "");
  // ...but a mutation starts from the latest state, so nothing is lost.
  std::string v2 = AddOk(2, v1);
  EXPECT_EQ(registry_->Active(), v1);
  EXPECT_EQ(*(*other)->Refresh(), true);
  EXPECT_EQ((*other)->Get(v2)->state, VersionState::kCandidate);
  EXPECT_EQ(*(*other)->Refresh(), false);
}

TEST_F(RegistryTest, MutationIsUnavailableWhileAnotherProcessHoldsTheLock) {
  RegistryOptions o;
  o.lock_timeout_ms = 20;
  Reopen(o);
  int fd = ::open((dir_.path() + "/adapters/LOCK").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  auto r = registry_->Add(MakeAdapter(1));
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("locked by another process"), std::string::npos);
  EXPECT_TRUE(registry_->List().empty());
  ::close(fd);
  EXPECT_TRUE(registry_->Add(MakeAdapter(1)).ok());
}

TEST_F(RegistryTest, ReadOnlyRegistryRefusesMutations) {
  AddActive(1);
  RegistryOptions ro;
  ro.read_only = true;
  auto reader = Registry::Open(ro, dir_.path() + "/adapters");
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->List().size(), 1u);
  EXPECT_EQ((*reader)->Add(MakeAdapter(2)).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*reader)->Rollback({}).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(RegistryTest, GcKeepsActivePinnedRecentHistoryAndExtra) {
  RegistryOptions o;
  o.keep_last = 1;
  o.keep_history = 1;
  Reopen(o);
  std::string v1 = AddActive(1);  // history: ->v1
  std::string v2 = AddActive(2);  // v1->v2
  std::string v3 = AddActive(3);  // v2->v3
  std::string v4 = AddOk(4);      // candidate
  std::string v5 = AddOk(5);      // candidate, newest
  std::string v6 = AddOk(6);
  ASSERT_TRUE(registry_->Pin(v4).ok());
  // Rejected by the gate: not kept by anything.
  GateInput bad = PassingInput(v3);
  bad.new_loss = 100;
  ASSERT_FALSE(registry_->Promote(v5, bad, false)->promoted);
  auto gc = registry_->Gc({"v1"});
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  std::set<std::string> removed(gc->removed_versions.begin(), gc->removed_versions.end());
  // v1: extra_keep; v2: history + rollback target; v3: active; v4: pinned; v6: newest.
  EXPECT_EQ(removed, std::set<std::string>{v5});
  EXPECT_FALSE(PathExists(registry_->PayloadPath(v5)));
  EXPECT_EQ(registry_->Get(v5).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->Label(v5), "v5");
  EXPECT_TRUE(registry_->Check(true).ok());
  // Without the extra keep, v1 goes too.
  gc = registry_->Gc();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->removed_versions, std::vector<std::string>{v1});
  (void)v2;
  (void)v6;
}

TEST_F(RegistryTest, GcRemovesTemporariesAndPayloadsOfDeletedVersionsOnly) {
  AddActive(1);
  const std::string unknown = dir_.path() + "/adapters/payloads/" + std::string(64, 'f') + ".adapter";
  const std::string tmp = dir_.path() + "/adapters/STATE.tmp.1.2";
  ASSERT_TRUE(WriteFileAtomic(unknown, "x").ok());
  ASSERT_TRUE(WriteFileAtomic(tmp, "y").ok());
  Reopen();
  EXPECT_TRUE(registry_->report().ok());
  EXPECT_EQ(registry_->report().warnings.size(), 2u);
  auto gc = registry_->Gc();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->removed_files, std::vector<std::string>{tmp});
  EXPECT_TRUE(PathExists(unknown)) << "gc deleted a payload it cannot account for";
  EXPECT_EQ(registry_->report().warnings.size(), 1u);
}

TEST_F(RegistryTest, OpenReportsMissingPayloadWithoutFixingIt) {
  std::string v1 = AddActive(1);
  std::filesystem::remove(registry_->PayloadPath(v1));
  Reopen();
  ASSERT_FALSE(registry_->report().ok());
  EXPECT_NE(registry_->report().errors[0].find("missing"), std::string::npos);
  EXPECT_EQ(registry_->Active(), v1);
  EXPECT_EQ(registry_->Load(v1).status().code(), StatusCode::kDataLoss);
}

TEST_F(RegistryTest, CorruptPayloadIsDataLossAndPromotionLeavesStateUnchanged) {
  std::string v1 = AddActive(1);
  std::string v2 = AddOk(2, v1);
  {
    std::fstream f(registry_->PayloadPath(v2), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  auto p = registry_->Promote(v2, PassingInput(v1), false);
  EXPECT_EQ(p.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(p.status().message().find(v2), std::string::npos);
  EXPECT_EQ(registry_->Active(), v1);
  EXPECT_EQ(StateOf(v2), VersionState::kCandidate);
  EXPECT_FALSE(registry_->Check(true).ok());
}

TEST_F(RegistryTest, TruncatedPayloadFileIsRefusedByAddFile) {
  auto bytes = EncodePayload(MakeAdapter(1));
  ASSERT_TRUE(bytes.ok());
  const std::string path = dir_.path() + "/cut.adapter";
  ASSERT_TRUE(WriteFileAtomic(path, bytes->substr(0, bytes->size() - 7)).ok());
  auto r = registry_->AddFile(path);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("cut.adapter"), std::string::npos);
  EXPECT_TRUE(registry_->List().empty());
}

TEST_F(RegistryTest, RefusesAdapterForOtherBaseModelAndStaysUnchanged) {
  RegistryOptions o;
  o.base_model = TinyBase(std::string(64, 'b'));
  Reopen(o);
  auto r = registry_->Add(MakeAdapter(1));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("hint: maybe wrong base model?"), std::string::npos);
  EXPECT_TRUE(registry_->List().empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path() + "/adapters/payloads"));
}

TEST_F(RegistryTest, UnknownParentIsRefused) {
  Adapter a = MakeAdapter(1);
  a.parent_version = std::string(64, 'e');
  EXPECT_EQ(registry_->Add(a).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(RegistryTest, DamagedStateFileIsDataLoss) {
  AddActive(1);
  registry_.reset();
  const std::string state = dir_.path() + "/adapters/STATE";
  auto bytes = ReadFile(state);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  damaged[damaged.size() / 2] ^= 0x01;
  ASSERT_TRUE(WriteFileAtomic(state, damaged).ok());
  auto r = Registry::Open(RegistryOptions{}, dir_.path() + "/adapters");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("STATE"), std::string::npos);
}

}  // namespace
}  // namespace attune::adapters
