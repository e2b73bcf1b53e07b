// A terminal chat app that embeds Attune: it answers with the active adapter
// and asks for feedback after each answer (👍 / 👎 / a correction), which is
// stored on the device and trains the next adapter in the background.
//
//   assistant_app [--data-dir DIR] [--model PATH]
//
// Uses only the public header attune/assistant.h.
#include <cstring>
#include <iostream>
#include <string>

#include "attune/assistant.h"

int main(int argc, char** argv) {
  attune::AssistantOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--data-dir")) options.data_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--model")) options.model_path = argv[i + 1];
  }
  auto opened = attune::Assistant::Open(options);
  if (!opened.ok()) {
    std::cerr << "assistant_app: " << opened.status().ToString() << "\n";
    return 1;
  }
  attune::Assistant& assistant = **opened;
  std::cout << "Ask anything (empty line to quit).\n";
  std::vector<attune::runtime::ChatMessage> conversation;
  std::string line;
  while (std::cout << "> " << std::flush, std::getline(std::cin, line) && !line.empty()) {
    conversation.push_back({"user", line});
    auto reply = assistant.Chat(conversation, [](std::string_view text) {
      std::cout << text << std::flush;
      return true;
    });
    if (!reply.ok()) {
      std::cerr << "\nassistant_app: " << reply.status().ToString() << "\n";
      conversation.pop_back();
      continue;
    }
    std::cout << "\n  [" << reply->adapter_label << "] feedback? (+ good, - bad, or type a better answer; Enter to skip) ";
    std::string fb;
    if (!std::getline(std::cin, fb)) break;
    attune::feedback::Event event;
    event.user_id = "local-user";
    if (fb == "+") event.signal = attune::feedback::Rating{attune::feedback::Thumb::kUp};
    else if (fb == "-") event.signal = attune::feedback::Rating{attune::feedback::Thumb::kDown};
    else if (!fb.empty()) event.signal = attune::feedback::Correction{fb};
    if (!fb.empty()) {
      auto stored = assistant.Record(event, reply->response_id);
      if (!stored.ok()) std::cerr << "  (feedback not stored: " << stored.status().message() << ")\n";
    }
    conversation.push_back({"assistant", reply->text});
  }
  auto status = assistant.GetStatus();
  std::cout << "active adapter: " << status.active_label << ", stored feedback: " << status.stored_events << "\n";
  return 0;
}
