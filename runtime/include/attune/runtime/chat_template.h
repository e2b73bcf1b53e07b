// Chat templates: turning a conversation into the prompt text a model was
// trained on. ChatML (SmolLM2, Qwen2) and Llama-3 are recognised from the
// model file's Jinja template string (`tokenizer.chat_template`); we do not
// run Jinja. An unknown template is an error that names the override option.
#pragma once

#include <string>
#include <vector>

#include "attune/core/result.h"

namespace attune::runtime {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The content of the last message with role "user"; nullptr when there is
// none. What a scoped adapter judges (runtime/scope.h).
const std::string* LastUserMessage(const std::vector<ChatMessage>& messages);

enum class ChatFormat { kChatMl, kLlama3 };

class ChatTemplate {
 public:
  // `override_name` ("chatml" or "llama3") wins when non-empty. Otherwise the
  // format is detected from `jinja`. For ChatML templates that insert a default
  // system prompt when the conversation has none (SmolLM2 does), that prompt
  // is extracted from the template and used the same way.
  static Result<ChatTemplate> Detect(const std::string& jinja, const std::string& override_name);

  ChatFormat format() const { return format_; }
  const std::string& name() const;

  // The prompt text; with `add_generation_prompt` it ends with the header of
  // an assistant turn, ready for generation.
  std::string Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // What the model emits to end its turn ("<|im_end|>" or "<|eot_id|>").
  const std::string& end_of_turn() const { return end_of_turn_; }
  // The text that closes an assistant turn in a training example (end_of_turn
  // plus the template's separator).
  std::string TurnSuffix() const;

 private:
  ChatFormat format_ = ChatFormat::kChatMl;
  std::string default_system_;
  std::string end_of_turn_ = "<|im_end|>";
};

}  // namespace attune::runtime
