// Mutated feedback events, in their JSON and protobuf forms: parsing either
// fails with a message or yields an event that validation and the example
// conversion handle without crashing (AddressSanitizer and UBSan in CI).
#include <gtest/gtest.h>

#include <random>

#include "attune/feedback/codec.h"
#include "attune/feedback/example.h"
#include "attune/feedback/validate.h"
#include "tests/core/mutate.h"

namespace attune::feedback {
namespace {

using attune::testing::FuzzIterations;
using attune::testing::Mutate;

const char* kSeeds[] = {
    R"({"id": "e-17", "user_id": "u-1", "conversation_id": "c-3", "time": "2026-11-20T09:15:00Z",
        "context": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What's my dog called?"}],
        "response": "I don't know.", "adapter_version": "", "correction": {"text": "Pixel."},
        "tags": {"app": "notes"}, "attachments": [{"mime_type": "image/png", "data": "AAEC"}]})",
    R"({"id":"p","user_id":"u","context":[{"role":"user","content":"q"}],"preference":{"chosen":"a","rejected":"b"}})",
    R"({"id":"r","userId":"u","adapterVersion":"v3","context":[{"role":"user","content":"q"}],"response":"a","rating":{"thumb":"DOWN"}})",
    R"({"id":"i","user_id":"u","context":[{"role":"user","content":"q"}],"response":"a","implicit":{"action":"COPIED"}})",
};

// Whatever parsed must survive the rest of the pipeline.
void Digest(Result<Event> e) {
  if (!e.ok()) {
    EXPECT_FALSE(e.status().message().empty());
    return;
  }
  if (!ValidateAndNormalize(*e).ok()) return;
  auto ex = ToExamples(*e);
  if (ex.ok()) {
    for (const auto& x : *ex) EXPECT_FALSE(x.event_id.empty());
  }
  auto again = ParseEvent(SerializeEvent(*e));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST(FeedbackFuzzTest, MutatedJsonEventsFailCleanlyOrParse) {
  std::mt19937 rng(11);
  const int n = FuzzIterations(2000);
  int parsed = 0;
  for (int it = 0; it < n; ++it) {
    auto e = ParseEventJson(Mutate(kSeeds[it % std::size(kSeeds)], rng, it));
    parsed += e.ok();
    Digest(std::move(e));
  }
  EXPECT_GT(parsed, 0);
}

TEST(FeedbackFuzzTest, MutatedProtobufEventsFailCleanlyOrParse) {
  std::vector<std::string> seeds;
  for (const char* s : kSeeds) {
    auto e = ParseEventJson(s);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    seeds.push_back(SerializeEvent(*e));
  }
  std::mt19937 rng(12);
  const int n = FuzzIterations(2000);
  int parsed = 0;
  for (int it = 0; it < n; ++it) {
    auto e = ParseEvent(Mutate(seeds[size_t(it) % seeds.size()], rng, it));
    parsed += e.ok();
    Digest(std::move(e));
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace attune::feedback
