// Mutated adapter payloads and health-watch state files: decoding fails with
// a message or yields a value that validates (AddressSanitizer and UBSan in
// CI).
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "attune/adapters/health.h"
#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "tests/adapters/test_util.h"
#include "tests/core/mutate.h"

namespace attune::adapters {
namespace {

using attune::testing::FuzzIterations;
using attune::testing::Mutate;

TEST(AdapterFuzzTest, MutatedPayloadsFailCleanlyOrDecodeToAValidAdapter) {
  auto bytes = EncodePayload(testing::MakeAdapter(3));
  ASSERT_TRUE(bytes.ok());
  std::mt19937 rng(21);
  const int n = FuzzIterations(2000);
  int decoded = 0;
  for (int it = 0; it < n; ++it) {
    auto a = DecodePayload(Mutate(*bytes, rng, it, 512), "fuzz");
    if (!a.ok()) {
      EXPECT_NE(a.status().message().find("fuzz"), std::string::npos) << a.status().message();
      continue;
    }
    ++decoded;
    EXPECT_TRUE(a->Validate().ok());
    double sum = 0;  // ASan checks every element is inside the buffers
    for (const auto& layer : a->layers) {
      for (const auto& pair : layer) {
        for (float x : pair.a.data) sum += x;
        for (float x : pair.b.data) sum += x;
      }
    }
    (void)sum;
  }
  EXPECT_GT(decoded, 0) << "mutations past the checksummed part should still decode sometimes";
}

TEST(AdapterFuzzTest, MutatedHealthStateFailsCleanlyOrLoads) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/HEALTH";
  HealthMonitor m;
  m.SetActive(std::string(64, 'a'), std::string(64, 'b'));
  for (int i = 0; i < 7; ++i) (void)m.RecordRating(std::string(64, 'a'), i % 2);
  (void)m.RecordRating(std::string(64, 'b'), true);
  ASSERT_TRUE(m.Save(path).ok());
  auto seed = ReadFile(path);
  ASSERT_TRUE(seed.ok());
  std::mt19937 rng(22);
  const int n = FuzzIterations(2000);
  int loaded = 0;
  for (int it = 0; it < n; ++it) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << Mutate(*seed, rng, it);
    HealthMonitor h;
    Status st = h.Load(path);
    if (!st.ok()) {
      EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
      continue;
    }
    ++loaded;
    auto c = h.CountsFor(std::string(64, 'a'));
    EXPECT_LE(c.down, c.rated);
    (void)h.RecordRating(std::string(64, 'a'), true);
  }
  EXPECT_GT(loaded, 0);
}

}  // namespace
}  // namespace attune::adapters
