#include "attune/runtime/chat_template.h"

namespace attune::runtime {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

// SmolLM2's template: "{% if loop.first and messages[0]['role'] != 'system' %}
// {{ '<|im_start|>system\nYou are ...<|im_end|>\n' }}{% endif %}".
std::string ExtractDefaultSystem(const std::string& jinja) {
  if (jinja.find("!= 'system'") == std::string::npos && jinja.find("!= \"system\"") == std::string::npos) {
    return "";
  }
  // The newline may be a real one or a Jinja "\n" escape.
  size_t b = std::string::npos;
  for (const std::string open : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
    if ((b = jinja.find(open)) != std::string::npos) {
      b += open.size();
      break;
    }
  }
  if (b == std::string::npos) return "";
  size_t e = jinja.find("<|im_end|>", b);
  if (e == std::string::npos) return "";
  std::string raw = jinja.substr(b, e - b);
  // Undo the Jinja string escapes that can appear in the literal.
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size()) {
      char c = raw[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += raw[i];
    }
  }
  return out;
}

}  // namespace

Result<ChatTemplate> ChatTemplate::Detect(const std::string& jinja, const std::string& override_name) {
  ChatTemplate t;
  if (!override_name.empty()) {
    if (override_name == "chatml") {
      t.format_ = ChatFormat::kChatMl;
    } else if (override_name == "llama3") {
      t.format_ = ChatFormat::kLlama3;
    } else {
      return InvalidArgumentError("unknown chat template '" + override_name + "' (--chat-template accepts chatml or llama3)");
    }
  } else if (jinja.find("<|im_start|>") != std::string::npos) {
    t.format_ = ChatFormat::kChatMl;
  } else if (jinja.find("<|start_header_id|>") != std::string::npos) {
    t.format_ = ChatFormat::kLlama3;
  } else if (jinja.empty()) {
    return InvalidArgumentError("the model has no chat template (tokenizer.chat_template); choose one with --chat-template chatml|llama3");
  } else {
    return InvalidArgumentError("the model's chat template is not one Attune recognises (ChatML, Llama-3); choose one with --chat-template chatml|llama3");
  }
  if (t.format_ == ChatFormat::kChatMl) {
    t.default_system_ = ExtractDefaultSystem(jinja);
    t.end_of_turn_ = "<|im_end|>";
  } else {
    t.end_of_turn_ = "<|eot_id|>";
  }
  return t;
}

const std::string& ChatTemplate::name() const {
  static const std::string kChatMl = "chatml", kLlama3 = "llama3";
  return format_ == ChatFormat::kChatMl ? kChatMl : kLlama3;
}

std::string ChatTemplate::Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  if (format_ == ChatFormat::kChatMl) {
    if (!default_system_.empty() && (messages.empty() || messages[0].role != "system")) {
      out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
    }
    for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
  } else {
    out += "<|begin_of_text|>";
    for (const auto& m : messages) {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + Trim(m.content) + "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  }
  return out;
}

std::string ChatTemplate::TurnSuffix() const {
  return format_ == ChatFormat::kChatMl ? "<|im_end|>\n" : "<|eot_id|>";
}

const std::string* LastUserMessage(const std::vector<ChatMessage>& messages) {
  const std::string* last = nullptr;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") last = &m.content;
  }
  return last;
}

}  // namespace attune::runtime
