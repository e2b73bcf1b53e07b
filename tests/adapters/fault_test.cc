// The registry and the health-watch state under injected filesystem faults:
// ENOSPC and EIO on every write operation, and a power cut that drops what
// was not fsync'd. After each fault the registry must reopen consistent,
// with its previous state or the new one, and an acknowledged change must
// survive a power cut.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "attune/adapters/health.h"
#include "attune/adapters/registry.h"
#include "attune/core/env.h"
#include "tests/adapters/test_util.h"
#include "tests/core/fault_env.h"

namespace attune::adapters {
namespace {

using attune::testing::FaultInjectionEnv;
using testing::MakeAdapter;
using testing::PassingInput;
using testing::ScratchDir;

struct Versions {
  std::string v1, v2;
};

// A registry with v1 active, written on the real filesystem.
Versions Prepare(const std::string& dir) {
  Versions v;
  auto reg = Registry::Open(RegistryOptions{}, dir);
  EXPECT_TRUE(reg.ok()) << reg.status().ToString();
  v.v1 = *(*reg)->Add(MakeAdapter(1));
  EXPECT_TRUE((*reg)->Promote(v.v1, PassingInput(), false).ok());
  return v;
}

// The change under test: a new version added and promoted over v1.
Status AddAndPromote(const std::string& dir, std::string* v2) {
  ASSIGN_OR_RETURN(auto reg, Registry::Open(RegistryOptions{}, dir));
  ASSIGN_OR_RETURN(*v2, reg->Add(MakeAdapter(2)));
  ASSIGN_OR_RETURN(PromoteResult r, reg->Promote(*v2, PassingInput(reg->Active()), false));
  return r.promoted ? Status::Ok() : InternalError("the gate refused");
}

// After any fault: opens cleanly, and the active version is v1 or v2 with a
// payload that loads.
void ExpectConsistent(const std::string& dir, const std::string& v1, const std::string& v2, const std::string& where) {
  auto reg = Registry::Open(RegistryOptions{}, dir);
  ASSERT_TRUE(reg.ok()) << where << ": " << reg.status().ToString();
  EXPECT_TRUE((*reg)->report().ok()) << where << ": " << ((*reg)->report().errors.empty() ? "" : (*reg)->report().errors[0]);
  const std::string active = (*reg)->Active();
  EXPECT_TRUE(active == v1 || (!v2.empty() && active == v2)) << where << ": active is '" << active << "'";
  EXPECT_TRUE((*reg)->Load(active).ok()) << where;
  EXPECT_TRUE((*reg)->Load(v1).ok()) << where << ": the previous version must stay loadable";
}

void WriteFaultsLeaveThePreviousState(int err) {
  for (int k = 0;; ++k) {
    ScratchDir dir;
    const std::string path = dir.path() + "/adapters";
    const Versions v = Prepare(path);
    FaultInjectionEnv env;
    std::string v2;
    Status st;
    {
      ScopedDefaultEnv scope(&env);
      env.FailAfter(k, err);
      st = AddAndPromote(path, &v2);
    }
    const std::string where = std::string(std::strerror(err)) + " after " + std::to_string(k) + " write operations";
    if (!env.injected()) {
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_GT(k, 3) << "the change has several write operations, each must be tried";
      return;
    }
    EXPECT_FALSE(st.ok()) << where << ": a failed write must not be reported as success";
    EXPECT_NE(st.message().find(std::strerror(err)), std::string::npos) << st.message();
    ExpectConsistent(path, v.v1, v2, where);
  }
}

TEST(RegistryFaultTest, NoSpaceOnAnyWriteLeavesThePreviousStateIntact) { WriteFaultsLeaveThePreviousState(ENOSPC); }
TEST(RegistryFaultTest, IoErrorOnAnyWriteLeavesThePreviousStateIntact) { WriteFaultsLeaveThePreviousState(EIO); }

// The process dies after k write operations and the machine loses power:
// everything not fsync'd is gone.
TEST(RegistryFaultTest, PowerCutAtAnyPointLeavesTheOldOrTheNewState) {
  for (int k = 0;; ++k) {
    ScratchDir dir;
    const std::string path = dir.path() + "/adapters";
    const Versions v = Prepare(path);
    FaultInjectionEnv env;
    std::string v2;
    Status st;
    {
      ScopedDefaultEnv scope(&env);
      env.FailAfter(k, EIO);  // nothing after the crash point reaches the disk
      st = AddAndPromote(path, &v2);
      env.DropUnsyncedData();
    }
    const std::string where = "power cut after " + std::to_string(k) + " write operations";
    ExpectConsistent(path, v.v1, v2, where);
    if (!env.injected()) {
      // Acknowledged: it must have survived the power cut.
      ASSERT_TRUE(st.ok()) << st.ToString();
      auto reg = Registry::Open(RegistryOptions{}, path);
      ASSERT_TRUE(reg.ok());
      EXPECT_EQ((*reg)->Active(), v2) << "an acknowledged promotion was lost in a power cut";
      return;
    }
  }
}

TEST(HealthStateFaultTest, FailedOrCutSaveKeepsThePreviousFile) {
  ScratchDir dir;
  const std::string path = dir.path() + "/HEALTH";
  const std::string a(64, 'a'), b(64, 'b');
  HealthMonitor m;
  m.SetActive(a, "");
  (void)m.RecordRating(a, true);
  ASSERT_TRUE(m.Save(path).ok());
  for (int k = 0;; ++k) {
    HealthMonitor next;
    next.SetActive(b, a);
    (void)next.RecordRating(b, true);
    (void)next.RecordRating(b, true);
    FaultInjectionEnv env;
    Status st;
    {
      ScopedDefaultEnv scope(&env);
      env.FailAfter(k, k % 2 ? EIO : ENOSPC);
      st = next.Save(path);
      env.DropUnsyncedData();
    }
    HealthMonitor loaded;
    ASSERT_TRUE(loaded.Load(path).ok()) << "after " << k << " operations";
    const int64_t rated_b = loaded.CountsFor(b).rated;
    if (!env.injected()) {
      ASSERT_TRUE(st.ok());
      EXPECT_EQ(rated_b, 2);
      return;
    }
    EXPECT_TRUE(rated_b == 0 || rated_b == 2) << "a mix of old and new after " << k << " operations";
    if (rated_b == 0) {
      EXPECT_EQ(loaded.CountsFor(a).rated, 1);
    }
  }
}

}  // namespace
}  // namespace attune::adapters
