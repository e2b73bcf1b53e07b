// A small pool for the decode kernels: the caller and n-1 workers split a
// range of chunks (dynamic claiming, so a thread that loses its core simply
// takes fewer chunks). Workers spin briefly between jobs (a decode step runs
// hundreds of short jobs back to back) and then sleep on a condition variable, so an idle
// pool costs no CPU.
//
// Thread safety: Run may be called from one thread at a time per pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace attune::runtime::kernels {

class ThreadPool {
 public:
  // n_threads counts the caller; 1 means no workers.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return int(workers_.size()) + 1; }
  // Limits how many threads take part in the next jobs (1..threads()).
  void set_active(int n) { active_ = n < 1 ? 1 : n > threads() ? threads() : n; }
  int active() const { return active_; }

  // Calls fn(chunk) for every chunk in [0, n_chunks) and returns when all are
  // done. Returns the seconds the caller spent waiting for workers after it
  // ran out of chunks (a sign that a worker lost its core).
  double Run(int64_t n_chunks, const std::function<void(int64_t)>& fn);

  // Seconds callers have spent waiting for workers, in total.
  double waited_seconds() const { return double(waited_ns_.load(std::memory_order_relaxed)) * 1e-9; }

  // A pool shared by the runtime's decode path, sized by ATTUNE_THREADS or
  // the number of cores.
  static ThreadPool& Default();

 private:
  void WorkerLoop(int index);
  void WakeSleepers();

  std::vector<std::thread> workers_;
  std::atomic<int> active_{1};
  std::mutex run_mu_;  // one job at a time; other callers run inline
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> participants_{0};
  std::atomic<int64_t> waited_ns_{0};
  std::mutex sleep_mu_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

}  // namespace attune::runtime::kernels
