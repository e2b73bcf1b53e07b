// The strict JSON reader: hostile input is refused with a message that
// names the byte or the field, never crashes, never hides what follows.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attune/feedback/codec.h"
#include "attune/feedback/validate.h"

namespace attune::feedback {
namespace {

constexpr char kEvent[] =
    R"({"id":"e-1","user_id":"u-1","context":[{"role":"user","content":"q"}],"rating":{"thumb":"UP"}})";

std::string ErrorOf(std::string_view json, const JsonParseOptions& o = {}) {
  auto r = ParseEventJson(json, o);
  return r.ok() ? "" : r.status().message();
}

std::string Nested(const std::string& key, int levels) {
  std::string open, close;
  for (int i = 0; i < levels; ++i) {
    open += "[";
    close += "]";
  }
  return std::string(R"({"id":"e","user_id":"u",")") + key + "\":" + open + close + "}";
}

TEST(JsonLimitsTest, NulByteAfterAnEventIsRejectedNotIgnored) {
  std::string text = std::string(kEvent) + std::string(1, '\0') + "garbage";
  std::string err = ErrorOf(text);
  EXPECT_NE(err.find("NUL byte"), std::string::npos) << err;
  EXPECT_NE(err.find("byte " + std::to_string(sizeof(kEvent) - 1)), std::string::npos) << err;
}

TEST(JsonLimitsTest, NulByteInsideAStringIsRejected) {
  std::string text = kEvent;
  text.replace(text.find("q\""), 1, std::string(1, '\0'));
  EXPECT_NE(ErrorOf(text), "");
}

TEST(JsonLimitsTest, DeepNestingIsRejectedBeforeParsingNotACrash) {
  // 100,000 levels crashed the process (stack overflow) before the cap.
  for (const char* key : {"tags", "unknown_field"}) {
    std::string err = ErrorOf(Nested(key, 100000));
    EXPECT_NE(err.find("nested deeper than 32 levels"), std::string::npos) << key << ": " << err;
  }
}

TEST(JsonLimitsTest, NestingAtTheLimitParsesOnePastIsRejected) {
  JsonParseOptions o;
  o.ignore_unknown_fields = true;
  // The event object is one level: 31 arrays inside make 32.
  EXPECT_EQ(ErrorOf(Nested("x", kMaxEventJsonDepth - 1), o).find("nested"), std::string::npos);
  EXPECT_NE(ErrorOf(Nested("x", kMaxEventJsonDepth), o).find("nested deeper than 32"), std::string::npos);
}

TEST(JsonLimitsTest, BracketsInsideStringsDoNotCountAsNesting) {
  std::string deep_text(1000, '[');
  std::string text = R"({"id":"e","user_id":"u","context":[{"role":"user","content":")" + deep_text +
                     R"("}],"rating":{"thumb":"UP"}})";
  EXPECT_EQ(ErrorOf(text), "");
}

TEST(JsonLimitsTest, InputAtTheSizeLimitParsesOnePastIsRejected) {
  std::string at_limit = kEvent;
  at_limit.append(kMaxEventJsonBytes - at_limit.size(), ' ');
  ASSERT_EQ(at_limit.size(), kMaxEventJsonBytes);
  EXPECT_EQ(ErrorOf(at_limit), "");
  std::string err = ErrorOf(at_limit + " ");
  EXPECT_NE(err.find("exceeds the limit of 16777216"), std::string::npos) << err;
}

TEST(JsonLimitsTest, InvalidUtf8IsRejectedWithAMessageThatIsValidUtf8) {
  std::string text = kEvent;
  text.replace(text.find("q\""), 1, "\xff\xfe");
  std::string err = ErrorOf(text);
  ASSERT_NE(err, "");
  EXPECT_NE(err.find("\\xff"), std::string::npos) << err;
  // The message goes into JSON output: dumping it must not throw.
  nlohmann::json doc;
  doc["error"] = err;
  EXPECT_NO_THROW((void)doc.dump());
}

TEST(JsonLimitsTest, DuplicateKeysAreRejectedNotLastWins) {
  std::string err = ErrorOf(
      R"({"id":"e","user_id":"u-1","user_id":"u-2","context":[{"role":"user","content":"q"}],"rating":{"thumb":"UP"}})");
  EXPECT_NE(err.find("user_id: duplicate key"), std::string::npos) << err;
}

TEST(JsonLimitsTest, DuplicateKeysInsideNestedObjectsAreNamedByPath) {
  std::string err = ErrorOf(
      R"({"id":"e","user_id":"u","context":[{"role":"user","content":"q"},{"role":"user","content":"a","content":"b"}],"rating":{"thumb":"UP"}})");
  EXPECT_NE(err.find("context[1].content: duplicate key"), std::string::npos) << err;
}

TEST(JsonLimitsTest, TwoSpellingsOfOneFieldAreRejected) {
  std::string err = ErrorOf(
      R"({"id":"e","user_id":"u-1","userId":"u-2","context":[{"role":"user","content":"q"}],"rating":{"thumb":"UP"}})");
  EXPECT_NE(err.find("keys 'user_id' and 'userId' name the same field"), std::string::npos) << err;
}

TEST(JsonLimitsTest, TagKeysThatDifferOnlyInSpellingAreTheUsersOwn) {
  auto r = ParseEventJson(
      R"({"id":"e","user_id":"u","context":[{"role":"user","content":"q"}],"rating":{"thumb":"UP"},"tags":{"a_b":"1","aB":"2"}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tags.size(), 2u);
  EXPECT_NE(ErrorOf(R"({"id":"e","user_id":"u","tags":{"k":"1","k":"2"}})").find("tags.k: duplicate key"),
            std::string::npos);
}

TEST(JsonLimitsTest, WriterNeverThrowsOnBytesThatAreNotUtf8) {
  Event e;
  e.id = "e";
  e.user_id = "";
  e.response = "bad \xff byte";
  std::string out;
  EXPECT_NO_THROW(out = EventToJson(e));
}

TEST(JsonLimitsTest, LargestValidEventFitsTheJsonLimit) {
  // Every size limit of validate.h at its maximum, with texts of control
  // characters (six bytes each in JSON), must parse: the JSON cap must never
  // refuse an event that validation accepts.
  Event e;
  e.id = std::string(128, 'i');
  e.user_id = std::string(128, 'u');
  e.conversation_id = std::string(128, 'c');
  e.adapter_version = std::string(128, 'v');
  e.time = {1700000000, 0};
  e.context.assign(8, Message{Role::kUser, std::string(32 * 1024, '\x01')});
  e.response = std::string(32 * 1024, '\x01');
  e.signal = Preference{std::string(32 * 1024, '\x01'), std::string(32 * 1024, '\x02')};
  e.attachments.assign(4, Attachment{std::string(64, 'a') + "/" + std::string(63, 'b'), std::string(1 << 20, '\xff')});
  for (int i = 0; i < 32; ++i) e.tags[std::string(62, 'k') + std::to_string(i + 10)] = std::string(1024, '\x01');
  ValidateOptions vo;
  vo.now = [] { return Timestamp{1700000000, 0}; };
  ASSERT_TRUE(Validate(e, vo).ok()) << Validate(e, vo).ToString();
  const std::string json = EventToJson(e);
  EXPECT_LT(json.size(), kMaxEventJsonBytes);
  auto back = ParseEventJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, e);
}

}  // namespace
}  // namespace attune::feedback
