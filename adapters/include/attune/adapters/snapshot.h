// SnapshotSlot<T>: publish an immutable value to many concurrent readers
// (read-copy-update over a shared_ptr).
//
// Readers call Pin() once at the start of a unit of work (a generation) and
// keep the returned pointer until it ends: the value cannot change or be
// freed under them, so a unit of work sees exactly one snapshot. A writer
// builds the next value off to the side and Publish()es it by swapping one
// pointer; readers never wait for a writer to build or free anything. The
// last holder of an old snapshot frees it, on its own thread.
//
// Header-only and type-agnostic: the runtime keeps its ready-to-use LoRA
// tensors here; tests use plain buffers (also under ThreadSanitizer).
//
// Thread safety: every method may be called from any thread at any time.
// Progress: the slot's lock covers a pointer copy and a reference-count
// increment (tens of nanoseconds), never the construction or destruction of
// a T: Publish hands the previous snapshot back to the caller, and a
// rejected PublishIf drops its argument after unlocking. The lock is ours
// rather than std::atomic<std::shared_ptr> because libstdc++ 12 releases
// that type's internal lock bit with relaxed/acquire order after reading the
// pointer (load, failed compare_exchange), which ThreadSanitizer reports as
// a data race and which weakly-ordered CPUs (ARM phones) may actually tear.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace attune::adapters {

// What a reader holds: shared, immutable.
template <typename T>
using Snapshot = std::shared_ptr<const T>;

template <typename T>
class SnapshotSlot {
 public:
  SnapshotSlot() = default;
  explicit SnapshotSlot(Snapshot<T> initial) : current_(std::move(initial)) {}
  SnapshotSlot(const SnapshotSlot&) = delete;
  SnapshotSlot& operator=(const SnapshotSlot&) = delete;

  // The current snapshot (null when none was published).
  Snapshot<T> Pin() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }

  // Installs `next` (may be null: no snapshot) and returns the previous one,
  // so that the caller chooses where the last reference is dropped.
  Snapshot<T> Publish(Snapshot<T> next) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_.swap(next);
      generation_.fetch_add(1, std::memory_order_release);
    }
    return next;
  }

  // Installs `next` only if the slot still holds `expected` (by pointer).
  // Returns false and leaves the slot unchanged otherwise (for instance when
  // another writer published first).
  bool PublishIf(const Snapshot<T>& expected, Snapshot<T> next) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (current_ != expected) return false;  // `next` is dropped after unlocking
      current_.swap(next);
      generation_.fetch_add(1, std::memory_order_release);
    }
    return true;  // the previous snapshot (now in `next`) is dropped here, unlocked
  }

  // Number of successful publishes so far (monotonic).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  Snapshot<T> current_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace attune::adapters
