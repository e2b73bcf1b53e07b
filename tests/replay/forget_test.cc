#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "attune/replay/store.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

using testing::MakeEvent;
using testing::ScratchDir;
using testing::TestOptions;

class ForgetTest : public ::testing::Test {
 protected:
  void Open(Options o = TestOptions()) {
    store_.reset();
    auto r = Store::Open(o, dir_.path());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    store_ = std::move(r).value();
  }
  void Append(const std::string& id, const std::string& user) { ASSERT_TRUE(store_->Append(MakeEvent(id, user)).ok()); }
  void Train(const std::string& version, std::vector<std::string> ids) {
    auto st = store_->GetStats();
    ASSERT_TRUE(store_->RecordTraining({version, st->cursor, st->last_seq, ids}).ok());
  }
  std::vector<std::string> ScanUsers(const std::string& user = "") {
    std::vector<std::string> users;
    EXPECT_TRUE(store_
                    ->Scan({.user_id = user},
                           [&](const StoredEvent& e) {
                             users.push_back(e.event.user_id);
                             return true;
                           })
                    .ok());
    return users;
  }

  ScratchDir dir_{"forget"};
  std::unique_ptr<Store> store_;
};

TEST_F(ForgetTest, ForgetUserLeavesNoTraceInScansIndexesOrSamples) {
  Open();
  for (int i = 0; i < 20; ++i) Append("e" + std::to_string(i), i % 3 ? "keep" : "gone");
  Train("v1", {"e0", "e1"});
  Train("v2", {"e4"});
  auto r = store_->ForgetUser("gone");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->events_erased, 7u);
  EXPECT_EQ(r->affected_adapter_versions, (std::vector<std::string>{"v1"}));
  for (const auto& u : ScanUsers()) EXPECT_EQ(u, "keep");
  EXPECT_TRUE(ScanUsers("gone").empty());
  EXPECT_EQ(store_->Get("e0").status().code(), StatusCode::kNotFound);
  auto b = store_->Sample({.max_new = 100, .replay_ratio = 10});
  for (const auto* v : {&b->new_events, &b->replay_events}) {
    for (const auto& e : *v) EXPECT_EQ(e.event.user_id, "keep");
  }
  EXPECT_EQ(store_->GetStats()->events, 13u);
  EXPECT_EQ(store_->GetStats()->forgotten, 7u);
  EXPECT_TRUE(store_->Verify().ok()) << store_->Verify().ToString();
  Open();  // and after a restart
  EXPECT_TRUE(ScanUsers("gone").empty());
  EXPECT_TRUE(store_->Verify().ok());
}

TEST_F(ForgetTest, ForgetUserReportsVersionsTrainedOnItsEvictedEvents) {
  Options o = TestOptions();
  o.retention.max_events = 20;
  o.retention.recent_window = 5;
  Open(o);
  Append("mine", "me");
  Train("v1", {"mine"});
  for (int i = 0; i < 200; ++i) Append("x" + std::to_string(i), "other");
  ASSERT_EQ(store_->Get("mine").status().code(), StatusCode::kNotFound);  // evicted
  auto r = store_->ForgetUser("me");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->events_erased, 0u);
  EXPECT_EQ(r->affected_adapter_versions, (std::vector<std::string>{"v1"}));
}

TEST_F(ForgetTest, ForgetEventReportsOnlyThatEventsVersions) {
  Open();
  Append("a", "u");
  Append("b", "u");
  Train("v1", {"a"});
  Train("v2", {"b"});
  auto r = store_->ForgetEvent("b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->events_erased, 1u);
  EXPECT_EQ(r->affected_adapter_versions, (std::vector<std::string>{"v2"}));
  EXPECT_TRUE(store_->Get("a").ok());
  // Its lineage row is gone: forgetting the user now names v1 (a) and v2
  // (through the user's lineage), never through the erased event again.
  EXPECT_EQ(store_->ForgetEvent("b").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->Verify().ok());
}

TEST_F(ForgetTest, ForgettingAnUnknownUserErasesNothing) {
  Open();
  Append("a", "u");
  auto r = store_->ForgetUser("nobody");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->events_erased, 0u);
  EXPECT_TRUE(r->affected_adapter_versions.empty());
  EXPECT_EQ(store_->ForgetUser("").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ForgetTest, ForgottenDataLeavesTheFilesAfterCompaction) {
  Options o = TestOptions();
  o.compact_after_forget = true;
  Open(o);
  feedback::Event secret = MakeEvent("s", "gone");
  secret.context[0].content = "SECRET-MARKER-7f3a";
  ASSERT_TRUE(store_->Append(secret).ok());
  Append("k", "keep");
  ASSERT_TRUE(store_->ForgetUser("gone").ok());
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(ss.str().find("SECRET-MARKER-7f3a"), std::string::npos) << f.path();
  }
}

}  // namespace
}  // namespace attune::replay
