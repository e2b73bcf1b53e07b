#include "attune/feedback/codec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace attune::feedback {
namespace {

constexpr char kDesignExample[] = R"({"id": "e-17", "user_id": "u-1", "conversation_id": "c-3",
  "time": "2026-11-20T09:15:00Z",
  "context": [{"role": "system", "content": "..."},
              {"role": "user", "content": "What's my dog called?"}],
  "response": "I don't know your dog's name.", "adapter_version": "",
  "correction": {"text": "Your dog is called Pixel."}})";

std::string ErrorOf(std::string_view json) {
  auto r = ParseEventJson(json);
  return r.ok() ? "" : r.status().message();
}

TEST(CodecTest, ParsesTheDesignExample) {
  auto r = ParseEventJson(kDesignExample);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, "e-17");
  EXPECT_EQ(r->user_id, "u-1");
  EXPECT_EQ(r->conversation_id, "c-3");
  EXPECT_EQ(FormatTime(r->time), "2026-11-20T09:15:00Z");
  ASSERT_EQ(r->context.size(), 2u);
  EXPECT_EQ(r->context[0].role, Role::kSystem);
  EXPECT_EQ(r->context[1].content, "What's my dog called?");
  EXPECT_EQ(std::get<Correction>(r->signal).text, "Your dog is called Pixel.");
}

TEST(CodecTest, AcceptsLowerCamelCaseNames) {
  auto r = ParseEventJson(
      R"({"id":"e","userId":"u","conversationId":"c","adapterVersion":"v3",
          "context":[{"role":"user","content":"q"}],"response":"a","rating":{"thumb":"UP"}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->user_id, "u");
  EXPECT_EQ(r->adapter_version, "v3");
  EXPECT_EQ(std::get<Rating>(r->signal).thumb, Thumb::kUp);
}

TEST(CodecTest, EmptyTimeMeansUnset) {
  auto r = ParseEventJson(R"({"id":"e","user_id":"u","time":"",
      "context":[{"role":"user","content":"q"}],"demonstration":{"text":"a"}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->time.is_set());
}

TEST(CodecTest, RolesAreCaseInsensitiveAndNormalised) {
  auto r = ParseEventJson(R"({"id":"e","user_id":"u",
      "context":[{"role":"Assistant","content":"q"}],"demonstration":{"text":"a"}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->context[0].role, Role::kAssistant);
  EXPECT_NE(EventToJson(*r).find(R"("role":"assistant")"), std::string::npos);
}

TEST(CodecTest, UnknownRoleNamesItsField) {
  EXPECT_EQ(ErrorOf(R"({"id":"e","context":[{"role":"user","content":"a"},
                        {"role":"bot","content":"b"}]})"),
            "context[1].role: unknown role 'bot' (expected system, user, assistant or tool)");
}

TEST(CodecTest, UnknownFieldIsRejectedByDefault) {
  std::string json = R"({"id":"e","user_id":"u","ratin":{"thumb":"UP"}})";
  EXPECT_NE(ErrorOf(json).find("ratin"), std::string::npos);
  EXPECT_NE(ErrorOf(json).find("unknown field"), std::string::npos);
  JsonParseOptions lenient;
  lenient.ignore_unknown_fields = true;
  EXPECT_TRUE(ParseEventJson(json, lenient).ok());
}

TEST(CodecTest, TwoSignalsAreRejected) {
  EXPECT_EQ(ErrorOf(R"({"id":"e","correction":{"text":"a"},"rating":{"thumb":"UP"}})"),
            "signal: exactly one of rating, correction, preference, demonstration, implicit is "
            "allowed; got rating and correction");
}

TEST(CodecTest, UnknownEnumValueIsRejected) {
  EXPECT_NE(ErrorOf(R"({"id":"e","rating":{"thumb":"SIDEWAYS"}})").find("SIDEWAYS"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"id":"e","implicit":{"action":"LIKED"}})").find("LIKED"), std::string::npos);
}

TEST(CodecTest, MalformedJsonNamesTheByteOffset) {
  EXPECT_EQ(ErrorOf(R"({"id": "e",)").rfind("invalid JSON at byte 12", 0), 0u);
  EXPECT_EQ(ErrorOf("[1,2]"), "event: expected a JSON object");
  EXPECT_NE(ErrorOf(R"({"id": 5})").find("id"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"time": "yesterday"})").find("time"), std::string::npos);
}

Event Full() {
  Event e;
  e.id = "e-1";
  e.user_id = "u-1";
  e.conversation_id = "c-1";
  e.time = {1763630100, 123000000};
  e.context = {{Role::kSystem, "s"}, {Role::kUser, "q"}, {Role::kAssistant, "a"}, {Role::kTool, "t"}};
  e.response = "r";
  e.adapter_version = "v7";
  e.signal = Preference{"yes", "no"};
  e.attachments = {{"image/png", std::string("\x89PNG\0\x01\xff", 7)}};
  e.tags = {{"app", "notes"}, {"lang", "en"}};
  return e;
}

TEST(CodecTest, BinaryRoundTripIsExact) {
  for (Signal s : {Signal{Rating{Thumb::kDown}}, Signal{Correction{"c"}}, Signal{Preference{"a", "b"}},
                   Signal{Demonstration{"d"}}, Signal{Implicit{ImplicitAction::kRegenerated}}}) {
    Event e = Full();
    e.signal = s;
    auto back = ParseEvent(SerializeEvent(e));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, e);
  }
}

TEST(CodecTest, JsonRoundTripKeepsAttachmentsIntact) {
  Event e = Full();
  std::string json = EventToJson(e);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  auto doc = nlohmann::json::parse(json);
  EXPECT_EQ(doc["user_id"], "u-1");
  EXPECT_EQ(doc["time"], "2025-11-20T09:15:00.123Z");
  EXPECT_EQ(doc["attachments"][0]["data"], "iVBORwAB/w==");  // base64
  auto back = ParseEventJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, e);
}

TEST(CodecTest, GarbageBytesAreDataLoss) {
  auto r = ParseEvent("\xff\xff\xff\xff garbage");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace attune::feedback
