#include "attune/feedback/validate.h"

#include <gtest/gtest.h>

namespace attune::feedback {
namespace {

constexpr Timestamp kNow{1800000000, 0};  // 2027-01-15T08:00:00Z

ValidateOptions Opts() {
  ValidateOptions o;
  o.now = [] { return kNow; };
  return o;
}

Event Good() {
  Event e;
  e.id = "e-1";
  e.user_id = "u-1";
  e.time = {1700000000, 0};
  e.context = {{Role::kSystem, "Be brief."}, {Role::kUser, "What's my dog called?"}};
  e.response = "I don't know your dog's name.";
  e.signal = Correction{"Your dog is called Pixel."};
  return e;
}

// The message of the rejection, or "" if the event is valid.
std::string Why(const Event& e, const ValidateOptions& o = Opts()) {
  Status s = Validate(e, o);
  return s.ok() ? "" : s.message();
}

void ExpectRejected(const Event& e, const std::string& field, const std::string& rule,
                    const ValidateOptions& o = Opts()) {
  std::string why = Why(e, o);
  EXPECT_EQ(why.rfind(field + ":", 0), 0u) << why;
  EXPECT_NE(why.find(rule), std::string::npos) << why;
}

TEST(ValidateTest, AcceptsTheDesignExample) { EXPECT_EQ(Why(Good()), ""); }

TEST(ValidateTest, RequiresIdAndUserId) {
  Event e = Good();
  e.id = "";
  ExpectRejected(e, "id", "is required");
  e = Good();
  e.user_id = "";
  ExpectRejected(e, "user_id", "is required");
}

TEST(ValidateTest, IdsAreAtMostMaxIdBytes) {
  Event e = Good();
  e.id = std::string(128, 'a');
  EXPECT_EQ(Why(e), "");
  e.id = std::string(129, 'a');
  ExpectRejected(e, "id", "exceeds max_id_bytes (128)");
  e = Good();
  e.conversation_id = std::string(129, 'c');
  ExpectRejected(e, "conversation_id", "max_id_bytes");
  e = Good();
  e.adapter_version = std::string(129, 'v');
  ExpectRejected(e, "adapter_version", "max_id_bytes");
}

TEST(ValidateTest, IdsArePrintableAsciiWithoutSpaces) {
  Event e = Good();
  e.id = "a~!";
  EXPECT_EQ(Why(e), "");
  e.id = "has space";
  ExpectRejected(e, "id", "byte 3 is not printable ASCII");
  e = Good();
  e.user_id = std::string("u\0x", 3);
  ExpectRejected(e, "user_id", "not printable ASCII");
  e = Good();
  e.user_id = "\xc3\xa9";
  ExpectRejected(e, "user_id", "not printable ASCII");
}

TEST(ValidateTest, ConversationIdIsOptional) {
  Event e = Good();
  e.conversation_id = "";
  EXPECT_EQ(Why(e), "");
}

TEST(ValidateTest, NormalizeSetsAnUnsetTimeToNow) {
  Event e = Good();
  e.time = {};
  ExpectRejected(e, "time", "is required");  // Validate alone does not fill it
  ASSERT_TRUE(ValidateAndNormalize(e, Opts()).ok());
  EXPECT_EQ(e.time, kNow);
}

TEST(ValidateTest, TimeIsNotBeforeMinTime) {
  Event e = Good();
  e.time = {946684800, 0};
  EXPECT_EQ(Why(e), "");
  e.time = {946684799, 999999999};
  ExpectRejected(e, "time", "before min_time_seconds");
}

TEST(ValidateTest, TimeIsAtMostMaxFutureSecondsAhead) {
  Event e = Good();
  e.time = {kNow.seconds + 86400, 0};
  EXPECT_EQ(Why(e), "");
  e.time = {kNow.seconds + 86401, 0};
  ExpectRejected(e, "time", "max_future_seconds (86400)");
}

TEST(ValidateTest, TimeNanosAreInRange) {
  Event e = Good();
  e.time.nanos = 999999999;
  EXPECT_EQ(Why(e), "");
  e.time.nanos = -1;
  ExpectRejected(e, "time", "nanos -1");
  e.time.nanos = 1000000000;
  ExpectRejected(e, "time", "nanos");
}

TEST(ValidateTest, ContextNeedsAtLeastOneMessage) {
  Event e = Good();
  e.context.clear();
  ExpectRejected(e, "context", "at least one message");
}

TEST(ValidateTest, ContextHasAtMostMaxContextMessages) {
  Event e = Good();
  e.context.assign(64, Message{Role::kUser, "hi"});
  EXPECT_EQ(Why(e), "");
  e.context.push_back(Message{Role::kUser, "hi"});
  ExpectRejected(e, "context", "65 messages exceed max_context_messages (64)");
}

TEST(ValidateTest, MessagesAreNonEmptyAndAtMostMaxTextBytes) {
  Event e = Good();
  e.context[1].content = "";
  ExpectRejected(e, "context[1].content", "must not be empty");
  e.context[1].content = std::string(32 * 1024, 'x');
  EXPECT_EQ(Why(e), "");
  e.context[1].content.push_back('x');
  ExpectRejected(e, "context[1].content", "exceeds max_text_bytes (32768)");
}

TEST(ValidateTest, ContextBytesAreAtMostMaxContextBytes) {
  Event e = Good();
  e.context.assign(8, Message{Role::kUser, std::string(32 * 1024, 'x')});  // 256 KiB
  EXPECT_EQ(Why(e), "");
  e.context.push_back(Message{Role::kUser, "x"});
  ExpectRejected(e, "context", "exceeds max_context_bytes (262144)");
}

TEST(ValidateTest, RolesAreKnown) {
  Event e = Good();
  e.context[0].role = static_cast<Role>(42);
  ExpectRejected(e, "context[0].role", "unknown role");
}

TEST(ValidateTest, TextsAreValidUtf8) {
  Event e = Good();
  e.context[0].content = "caf\xc3\xa9 \xf0\x9f\x90\xb6";
  EXPECT_EQ(Why(e), "");
  e.context[0].content = "caf\xc3";
  ExpectRejected(e, "context[0].content", "not valid UTF-8");
  e = Good();
  e.response = "\xff";
  ExpectRejected(e, "response", "not valid UTF-8");
  e = Good();
  e.signal = Correction{"\xed\xa0\x80"};
  ExpectRejected(e, "correction.text", "not valid UTF-8");
}

TEST(ValidateTest, ResponseIsAtMostMaxTextBytes) {
  Event e = Good();
  e.response = std::string(32 * 1024, 'r');
  EXPECT_EQ(Why(e), "");
  e.response.push_back('r');
  ExpectRejected(e, "response", "max_text_bytes");
}

TEST(ValidateTest, ExactlyOneSignalIsRequired) {
  Event e = Good();
  e.signal = std::monostate{};
  ExpectRejected(e, "signal", "exactly one of");
}

TEST(ValidateTest, RatingNeedsThumbAndResponse) {
  Event e = Good();
  e.signal = Rating{Thumb::kUp};
  EXPECT_EQ(Why(e), "");
  e.signal = Rating{Thumb::kUnspecified};
  ExpectRejected(e, "rating.thumb", "must be UP or DOWN");
  e.signal = Rating{Thumb::kDown};
  e.response = "";
  ExpectRejected(e, "response", "must not be empty for a rating");
}

TEST(ValidateTest, CorrectionAndDemonstrationNeedText) {
  Event e = Good();
  e.signal = Correction{""};
  ExpectRejected(e, "correction.text", "must not be empty");
  e.signal = Demonstration{""};
  ExpectRejected(e, "demonstration.text", "must not be empty");
  e.signal = Demonstration{"The ideal answer."};
  e.response = "";
  EXPECT_EQ(Why(e), "");
}

TEST(ValidateTest, PreferenceNeedsTwoDifferentAnswersButNoResponse) {
  Event e = Good();
  e.response = "";
  e.signal = Preference{"a", "b"};
  EXPECT_EQ(Why(e), "");
  e.signal = Preference{"a", "a"};
  ExpectRejected(e, "preference", "must differ");
  e.signal = Preference{"", "b"};
  ExpectRejected(e, "preference.chosen", "must not be empty");
  e.signal = Preference{"a", ""};
  ExpectRejected(e, "preference.rejected", "must not be empty");
}

TEST(ValidateTest, ImplicitNeedsKnownActionAndResponse) {
  Event e = Good();
  e.signal = Implicit{ImplicitAction::kCopied};
  EXPECT_EQ(Why(e), "");
  e.signal = Implicit{ImplicitAction::kUnspecified};
  ExpectRejected(e, "implicit.action", "must be ACCEPTED");
  e.signal = Implicit{ImplicitAction::kDismissed};
  e.response = "";
  ExpectRejected(e, "response", "implicit");
}

TEST(ValidateTest, AttachmentsAreAtMostMaxAttachments) {
  Event e = Good();
  e.attachments.assign(8, Attachment{"image/png", "\x89PNG"});
  EXPECT_EQ(Why(e), "");
  e.attachments.push_back(Attachment{"image/png", "\x89PNG"});
  ExpectRejected(e, "attachments", "9 exceed max_attachments (8)");
}

TEST(ValidateTest, AttachmentDataIsNonEmptyAndAtMostMaxAttachmentBytes) {
  Event e = Good();
  e.attachments = {Attachment{"application/octet-stream", std::string(1 << 20, '\0')}};
  EXPECT_EQ(Why(e), "");
  e.attachments[0].data.push_back('\0');
  ExpectRejected(e, "attachments[0].data", "max_attachment_bytes (1048576)");
  e.attachments[0].data.clear();
  ExpectRejected(e, "attachments[0].data", "must not be empty");
}

TEST(ValidateTest, AttachmentsTotalAtMostMaxTotalAttachmentBytes) {
  Event e = Good();
  e.attachments.assign(4, Attachment{"audio/wav", std::string(1 << 20, 'a')});
  EXPECT_EQ(Why(e), "");
  e.attachments.push_back(Attachment{"audio/wav", "a"});
  ExpectRejected(e, "attachments", "max_total_attachment_bytes (4194304)");
}

TEST(ValidateTest, MimeTypeIsTypeSlashSubtype) {
  Event e = Good();
  e.attachments = {Attachment{"", "x"}};
  ExpectRejected(e, "attachments[0].mime_type", "is required");
  e.attachments = {Attachment{"png", "x"}};
  ExpectRejected(e, "attachments[0].mime_type", "type/subtype");
  e.attachments = {Attachment{"image/", "x"}};
  ExpectRejected(e, "attachments[0].mime_type", "type/subtype");
  e.attachments = {Attachment{std::string(120, 'a') + "/" + std::string(7, 'b'), "x"}};
  EXPECT_EQ(Why(e), "");
  e.attachments = {Attachment{std::string(120, 'a') + "/" + std::string(8, 'b'), "x"}};
  ExpectRejected(e, "attachments[0].mime_type", "max_mime_type_bytes (128)");
}

TEST(ValidateTest, TagsRespectCountAndSizeLimits) {
  Event e = Good();
  for (int i = 0; i < 32; ++i) e.tags["k" + std::to_string(i)] = "v";
  EXPECT_EQ(Why(e), "");
  e.tags["one-more"] = "v";
  ExpectRejected(e, "tags", "33 entries exceed max_tags (32)");
  e = Good();
  e.tags[std::string(64, 'k')] = std::string(1024, 'v');
  EXPECT_EQ(Why(e), "");
  e.tags[std::string(65, 'k')] = "v";
  ExpectRejected(e, "tags[\"" + std::string(65, 'k') + "\"]", "max_tag_key_bytes");
  e = Good();
  e.tags["k"] = std::string(1025, 'v');
  ExpectRejected(e, "tags[\"k\"]", "max_tag_value_bytes");
  e = Good();
  e.tags[""] = "v";
  ExpectRejected(e, "tags", "key must not be empty");
  e = Good();
  e.tags["k"] = "\xc0\x80";
  ExpectRejected(e, "tags[\"k\"]", "not valid UTF-8");
}

TEST(ValidateTest, NewerSchemaVersionIsFailedPrecondition) {
  Event e = Good();
  e.schema_version = kSchemaVersion + 1;
  Status s = Validate(e, Opts());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("schema_version"), std::string::npos);
}

TEST(ValidateTest, LimitsAreConfigurable) {
  ValidateOptions o = Opts();
  o.limits.max_text_bytes = 4;
  Event e = Good();
  e.context = {{Role::kUser, "abcd"}};
  e.response = "ok";
  e.signal = Correction{"abcd"};
  EXPECT_EQ(Why(e, o), "");
  e.signal = Correction{"abcde"};
  ExpectRejected(e, "correction.text", "max_text_bytes (4)", o);
}

TEST(ValidateTest, FailedNormalizeLeavesTheEventUnchanged) {
  Event e = Good();
  e.time = {};
  e.id = "";
  Event before = e;
  EXPECT_FALSE(ValidateAndNormalize(e, Opts()).ok());
  EXPECT_EQ(e, before);
}

TEST(Utf8Test, RejectsOverlongsSurrogatesAndOutOfRange) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("\x7f"));
  EXPECT_TRUE(IsValidUtf8("\xc2\x80"));
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));   // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80"));
}

}  // namespace
}  // namespace attune::feedback
