#include "attune/runtime/prompt_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace attune::runtime {

PromptCache::PromptCache(const PromptCacheOptions& options) : options_(options) {}

bool PromptCache::SameOwner(const Entry& e, const std::shared_ptr<const ActiveAdapter>& adapter) {
  if (!adapter) return e.base;
  if (e.base) return false;
  // Owner equality of the control blocks: exact identity, even after the
  // snapshot is gone (an expired weak_ptr keeps its control block).
  return !e.adapter.owner_before(adapter) && !adapter.owner_before(e.adapter);
}

void PromptCache::DropExpiredLocked() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (!(*it)->base && (*it)->adapter.expired()) {
      bytes_ -= (*it)->bytes;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

int64_t PromptCache::Restore(const std::shared_ptr<const ActiveAdapter>& adapter, const std::vector<int32_t>& prompt,
                             KvCache* cache) {
  if (options_.max_bytes == 0 || prompt.size() < 2) return 0;
  std::shared_ptr<const Entry> best;
  int64_t best_len = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.lookups;
    DropExpiredLocked();
    auto best_it = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      const Entry& e = **it;
      if (!SameOwner(e, adapter)) continue;
      const size_t n = std::min(e.tokens.size(), prompt.size() - 1);
      const int64_t common = std::mismatch(e.tokens.begin(), e.tokens.begin() + n, prompt.begin()).first - e.tokens.begin();
      if (common > best_len) {
        best_len = common;
        best_it = it;
      }
    }
    if (best_len < std::max<int64_t>(1, options_.min_reuse_tokens)) return 0;
    best = *best_it;
    entries_.splice(entries_.begin(), entries_, best_it);  // most recently used
    ++stats_.hits;
    stats_.reused_tokens += uint64_t(best_len);
  }
  for (size_t layer = 0; layer < best->k.size(); ++layer) {
    cache->k[layer].narrow(2, 0, best_len).copy_(best->k[layer].narrow(2, 0, best_len));
    cache->v[layer].narrow(2, 0, best_len).copy_(best->v[layer].narrow(2, 0, best_len));
  }
  cache->length = best_len;
  return best_len;
}

void PromptCache::Store(const std::shared_ptr<const ActiveAdapter>& adapter, const std::vector<int32_t>& tokens,
                        const KvCache& cache) {
  const int64_t len = cache.length;
  if (options_.max_bytes == 0 || len < options_.min_reuse_tokens || int64_t(tokens.size()) < len) return;
  auto e = std::make_shared<Entry>();
  e->base = adapter == nullptr;
  if (adapter) e->adapter = adapter;
  e->tokens.assign(tokens.begin(), tokens.begin() + len);
  for (size_t layer = 0; layer < cache.k.size(); ++layer) {
    e->k.push_back(cache.k[layer].narrow(2, 0, len).clone());
    e->v.push_back(cache.v[layer].narrow(2, 0, len).clone());
    e->bytes += size_t(e->k.back().nbytes() + e->v.back().nbytes());
  }
  if (e->bytes > options_.max_bytes) return;
  std::lock_guard<std::mutex> l(mu_);
  DropExpiredLocked();
  // An entry of the same owner that this one extends (or equals) is redundant.
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& old = **it;
    if (SameOwner(old, adapter) && old.tokens.size() <= e->tokens.size() &&
        std::equal(old.tokens.begin(), old.tokens.end(), e->tokens.begin())) {
      bytes_ -= old.bytes;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  bytes_ += e->bytes;
  entries_.push_front(std::move(e));
  while (bytes_ > options_.max_bytes && !entries_.empty()) {
    bytes_ -= entries_.back()->bytes;
    entries_.pop_back();
  }
}

void PromptCache::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  entries_.clear();
  bytes_ = 0;
}

PromptCacheStats PromptCache::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  PromptCacheStats s = stats_;
  s.entries = entries_.size();
  s.bytes = bytes_;
  return s;
}

}  // namespace attune::runtime
