#include "attune/runtime/chat_template.h"

#include <gtest/gtest.h>

namespace attune::runtime {
namespace {

const char* kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatTemplateTest, ChatMlInsertsTheTemplatesDefaultSystemPrompt) {
  auto t = ChatTemplate::Detect(kSmolTemplate, "");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->name(), "chatml");
  EXPECT_EQ(t->Render({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t->Render({{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3IsDetectedAndTrimsContent) {
  auto t = ChatTemplate::Detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", "");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->name(), "llama3");
  EXPECT_EQ(t->Render({{"user", " Hi "}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t->end_of_turn(), "<|eot_id|>");
}

TEST(ChatTemplateTest, UnknownTemplateNamesTheOverrideOption) {
  auto t = ChatTemplate::Detect("{{ messages }}", "");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("--chat-template"), std::string::npos);
  EXPECT_TRUE(ChatTemplate::Detect("{{ messages }}", "chatml").ok());
  EXPECT_FALSE(ChatTemplate::Detect("", "vicuna").ok());
}

}  // namespace
}  // namespace attune::runtime
