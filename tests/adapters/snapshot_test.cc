// Publish/pin with plain buffers. Also built with ThreadSanitizer (see
// tests/adapters/tsan/), which is where its data-race checks pay off.
#include "attune/adapters/snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace attune::adapters {
namespace {

// Stands in for a runtime adapter snapshot: a version and a buffer whose
// every element is derived from it, so that a torn read is detectable.
struct Buffer {
  Buffer(uint64_t v, size_t n, std::atomic<int>* live) : version(v), data(n, v * 2654435761u), live(live) {
    if (live) live->fetch_add(1);
  }
  ~Buffer() {
    if (live) live->fetch_sub(1);
  }
  uint64_t version;
  std::vector<uint64_t> data;
  std::atomic<int>* live;
};

TEST(SnapshotSlot, EmptySlotPinsNull) {
  SnapshotSlot<Buffer> slot;
  EXPECT_EQ(slot.Pin(), nullptr);
  EXPECT_EQ(slot.generation(), 0u);
}

TEST(SnapshotSlot, PinnedSnapshotOutlivesPublish) {
  std::atomic<int> live{0};
  SnapshotSlot<Buffer> slot(std::make_shared<const Buffer>(1, 16, &live));
  Snapshot<Buffer> pinned = slot.Pin();
  Snapshot<Buffer> old = slot.Publish(std::make_shared<const Buffer>(2, 16, &live));
  EXPECT_EQ(old.get(), pinned.get());
  old.reset();
  EXPECT_EQ(live.load(), 2);  // still held by `pinned`
  EXPECT_EQ(pinned->version, 1u);
  EXPECT_EQ(slot.Pin()->version, 2u);
  pinned.reset();
  EXPECT_EQ(live.load(), 1);  // the last holder freed it
  EXPECT_EQ(slot.generation(), 1u);
}

TEST(SnapshotSlot, PublishIfFailsWhenAnotherWriterWon) {
  SnapshotSlot<Buffer> slot(std::make_shared<const Buffer>(1, 1, nullptr));
  Snapshot<Buffer> seen = slot.Pin();
  slot.Publish(std::make_shared<const Buffer>(2, 1, nullptr));
  EXPECT_FALSE(slot.PublishIf(seen, std::make_shared<const Buffer>(3, 1, nullptr)));
  EXPECT_EQ(slot.Pin()->version, 2u);
  EXPECT_TRUE(slot.PublishIf(slot.Pin(), std::make_shared<const Buffer>(4, 1, nullptr)));
  EXPECT_EQ(slot.Pin()->version, 4u);
}

TEST(SnapshotSlot, ReadersNeverSeeATornSnapshotWhileWritersPublish) {
  constexpr int kReaders = 8;
  constexpr int kPublishes = 400;
  std::atomic<int> live{0};
  SnapshotSlot<Buffer> slot(std::make_shared<const Buffer>(0, 256, &live));
  std::atomic<bool> done{false};
  std::atomic<int64_t> reads{0}, torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      uint64_t last_version = 0;
      while (!done.load(std::memory_order_acquire)) {
        Snapshot<Buffer> s = slot.Pin();  // one "generation"
        const uint64_t want = s->version * 2654435761u;
        for (uint64_t x : s->data) torn.fetch_add(x != want ? 1 : 0, std::memory_order_relaxed);
        // Versions are published in increasing order: a reader never goes back.
        if (s->version < last_version) torn.fetch_add(1);
        last_version = s->version;
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // Two writers, like a promotion racing an automatic rollback.
  std::atomic<uint64_t> next_version{1};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < kPublishes / 2; ++i) {
        for (;;) {
          Snapshot<Buffer> cur = slot.Pin();
          auto next = std::make_shared<const Buffer>(next_version.fetch_add(1), 256, &live);
          if (next->version > cur->version && slot.PublishIf(cur, std::move(next))) break;
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(slot.generation(), static_cast<uint64_t>(kPublishes));
  EXPECT_EQ(live.load(), 1);  // only the current snapshot is alive
}

}  // namespace
}  // namespace attune::adapters
