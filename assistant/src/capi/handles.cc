#include "handles.h"

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace attune::capi {

namespace {

struct Table {
  std::mutex mu;
  std::unordered_map<uintptr_t, std::shared_ptr<OpenAssistant>> open;
  uintptr_t next = 1;
};

// Leaked on purpose: handles may be closed from static destructors of the
// app after this library's own statics would have been destroyed.
Table& table() {
  static Table* t = new Table;
  return *t;
}

}  // namespace

attune_assistant* Register(std::shared_ptr<OpenAssistant> opened) {
  Table& t = table();
  std::lock_guard<std::mutex> l(t.mu);
  uintptr_t id = t.next++;
  t.open.emplace(id, std::move(opened));
  return reinterpret_cast<attune_assistant*>(id);
}

std::shared_ptr<OpenAssistant> Find(attune_assistant* handle) {
  Table& t = table();
  std::lock_guard<std::mutex> l(t.mu);
  auto it = t.open.find(reinterpret_cast<uintptr_t>(handle));
  return it == t.open.end() ? nullptr : it->second;
}

std::shared_ptr<OpenAssistant> Unregister(attune_assistant* handle) {
  Table& t = table();
  std::lock_guard<std::mutex> l(t.mu);
  auto it = t.open.find(reinterpret_cast<uintptr_t>(handle));
  if (it == t.open.end()) return nullptr;
  auto opened = std::move(it->second);
  t.open.erase(it);
  return opened;
}

}  // namespace attune::capi
