// Mutations of valid events through the strict JSON reader and back out
// through the writer: no crash, no exception, every error message valid
// UTF-8 and every accepted event re-encodable. Seeded; scripts/test.sh runs
// it under AddressSanitizer and UBSan with more iterations
// (ATTUNE_FUZZ_ITERATIONS).
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "attune/feedback/codec.h"

namespace attune::feedback {
namespace {

const char* const kSeeds[] = {
    R"({"id":"e-1","user_id":"u-1","conversation_id":"c","time":"2026-11-20T09:15:00Z",)"
    R"("context":[{"role":"system","content":"s"},{"role":"user","content":"What's my dog called?"}],)"
    R"("response":"I don't know.","correction":{"text":"Pixel."},"tags":{"a":"b","c_d":"e"}})",
    R"({"id":"e-2","userId":"u","context":[{"role":"user","content":"q"}],"preference":{"chosen":"x","rejected":"y"},)"
    R"("attachments":[{"mime_type":"image/png","data":"iVBORw0KGgo="}]})",
    R"({"id":"e-3","user_id":"u","context":[{"role":"user","content":"\u00e9\ud83d\ude00"}],"response":"r",)"
    R"("rating":{"thumb":"UP"},"adapter_version":"v3"})",
};

// One of the input families of the hostile-input probe.
std::string Mutate(std::string s, std::mt19937& rng) {
  const size_t pos = s.empty() ? 0 : rng() % s.size();
  switch (rng() % 9) {
    case 0:  // truncate
      s.resize(pos);
      break;
    case 1:  // flip bytes
      for (int n = 1 + static_cast<int>(rng() % 4); n > 0 && !s.empty(); --n) {
        s[rng() % s.size()] ^= static_cast<char>(1 + rng() % 255);
      }
      break;
    case 2:  // a NUL byte
      s.insert(pos, 1, '\0');
      break;
    case 3:  // bytes that are not UTF-8
      s.insert(pos, "\xff\xc0\x80\xed\xa0\x80");
      break;
    case 4:  // deep nesting
      s.insert(pos, std::string(1 + rng() % 5000, rng() % 2 ? '[' : '{'));
      break;
    case 5:  // a repeated chunk (duplicate keys, more fields)
      s.insert(pos, s.substr(rng() % s.size(), rng() % 40));
      break;
    case 6:  // a key in another spelling
      if (auto p = s.find("user_id"); p != std::string::npos) s.insert(p - 1, "\"userId\":\"x\",");
      break;
    case 7:  // a huge number or string escape
      s.insert(pos, rng() % 2 ? "1e999999" : "\\uDFFF\\u0000");
      break;
    default:  // trailing garbage
      s += std::string(1, static_cast<char>(rng())) + "garbage";
      break;
  }
  return s;
}

TEST(JsonFuzzTest, MutatedEventsNeverCrashOrThrow) {
  int iterations = 1500;
  if (const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS")) iterations = std::atoi(n);
  std::mt19937 rng(20261202);
  int accepted = 0;
  for (int it = 0; it < iterations; ++it) {
    std::string input = kSeeds[it % 3];
    for (int rounds = 1 + static_cast<int>(rng() % 3); rounds > 0; --rounds) input = Mutate(input, rng);
    JsonParseOptions o;
    o.ignore_unknown_fields = it % 2 == 0;
    auto r = ParseEventJson(input, o);
    if (!r.ok()) {
      ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
      // Strict dump: throws if the message is not valid UTF-8.
      ASSERT_NO_THROW((void)nlohmann::json(r.status().message()).dump()) << "iteration " << it;
      continue;
    }
    ++accepted;
    std::string out;
    ASSERT_NO_THROW(out = EventToJson(*r));
    auto again = ParseEventJson(out, o);
    ASSERT_TRUE(again.ok()) << "iteration " << it << ": " << again.status().ToString() << "\n" << out;
    EXPECT_EQ(*again, *r);
  }
  EXPECT_GT(accepted, 0) << "no mutation left a valid event: the test exercises only the error paths";
}

}  // namespace
}  // namespace attune::feedback
