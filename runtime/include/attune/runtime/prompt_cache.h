// PromptCache: the keys and values of recent prompts and their replies, so a
// conversation that resends its whole history prefills only what is new.
//
// An entry is keyed by the tokens and by who computed its keys and values:
// the base model, or one adapter snapshot (by identity, never by name). A
// cache filled under one adapter never serves another, nor the base model,
// nor a later snapshot of the same version: a swap starts the cache afresh
// for the new snapshot. Entries of a snapshot nobody holds any more are
// dropped.
//
// Restore copies the longest cached prefix of a prompt into a fresh KvCache;
// at least the prompt's last token is always computed again, since its
// logits start the reply. The reused positions hold the same values a full
// prefill computes, up to floating-point summation order (and, for tokens
// that were generated, the decode path's 8-bit activations), so a greedy
// reply may differ from an uncached one only where two tokens nearly tie.
//
// Memory is bounded by max_bytes (least recently used entries go first);
// an entry is one copy of its positions' keys and values (SmolLM2-135M:
// 45 KiB a token).
//
// Thread safety: all members may be called from any thread; copies happen
// outside the lock.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model.h"

namespace attune::runtime {

struct PromptCacheOptions {
  // Upper bound of the cached keys and values. 0 disables the cache.
  // Default: 64 MiB
  size_t max_bytes = size_t{64} << 20;
  // A shorter common prefix is not worth a copy. Default: 4 tokens
  int64_t min_reuse_tokens = 4;
};

struct PromptCacheStats {
  uint64_t lookups = 0, hits = 0;
  uint64_t reused_tokens = 0;  // positions restored instead of computed
  uint64_t entries = 0, bytes = 0;
};

class PromptCache {
 public:
  explicit PromptCache(const PromptCacheOptions& options = {});

  // Copies into `cache` (fresh: length 0, capacity >= prompt.size()) the
  // longest prefix of `prompt` cached under `adapter` (null: the base model),
  // at most prompt.size() - 1 positions, and sets cache->length. Returns the
  // number of positions restored (0: none).
  int64_t Restore(const std::shared_ptr<const ActiveAdapter>& adapter, const std::vector<int32_t>& prompt,
                  KvCache* cache);

  // Remembers the first cache.length positions, whose tokens are
  // tokens[0, cache.length), as computed under `adapter`. An entry of the
  // same owner that the new one extends is replaced.
  // REQUIRES: tokens.size() >= cache.length.
  void Store(const std::shared_ptr<const ActiveAdapter>& adapter, const std::vector<int32_t>& tokens,
             const KvCache& cache);

  void Clear();
  PromptCacheStats stats() const;
  const PromptCacheOptions& options() const { return options_; }

 private:
  struct Entry {
    bool base = true;
    std::weak_ptr<const ActiveAdapter> adapter;  // identity of the snapshot when !base
    std::vector<int32_t> tokens;
    std::vector<at::Tensor> k, v;  // per layer [1, n_kv_heads, tokens.size(), head_dim]
    size_t bytes = 0;
  };
  static bool SameOwner(const Entry& e, const std::shared_ptr<const ActiveAdapter>& adapter);
  void DropExpiredLocked();

  const PromptCacheOptions options_;
  mutable std::mutex mu_;
  std::list<std::shared_ptr<const Entry>> entries_;  // most recently used first
  size_t bytes_ = 0;
  PromptCacheStats stats_;
};

}  // namespace attune::runtime
