#include "runtime/src/kernels/thread_pool.h"

#include <chrono>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace attune::runtime::kernels {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// About 50 µs of spinning before a worker sleeps: longer than the gap between
// two kernels of one decode step, far shorter than the gap between requests.
constexpr int kSpinIterations = 20000;

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  active_ = n_threads;
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(2, std::memory_order_seq_cst);
  WakeSleepers();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WakeSleepers() {
  // A worker counts itself in sleepers_ under sleep_mu_ before it checks the
  // generation, so either it sees the new generation or we see it and
  // notify after it waits.
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  std::lock_guard<std::mutex> lock(sleep_mu_);
  wake_.notify_all();
}

void ThreadPool::WorkerLoop(int index) {
  // Workers start before any job (generation 0), however late they run.
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; ++spin) {
      CpuRelax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(sleep_mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    if (stop_.load()) return;
    if (g & 1) continue;  // the caller is writing the next job
    // Seqlock: announce ourselves, then check the job did not change under us
    // (the caller waits for participants_ == 0 before rewriting the job).
    participants_.fetch_add(1, std::memory_order_seq_cst);
    if (generation_.load(std::memory_order_seq_cst) != g) {
      participants_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    seen = g;
    if (index < active_) {
      for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < n_chunks_;) {
        (*fn_)(c);
        done_.fetch_add(1, std::memory_order_release);
      }
    }
    participants_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

double ThreadPool::Run(int64_t n_chunks, const std::function<void(int64_t)>& fn) {
  if (n_chunks <= 0) return 0;
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (!lock.owns_lock() || workers_.empty() || active_ <= 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) fn(c);
    return 0;
  }
  // Odd generation: the job is being rewritten; wait for workers still in
  // the previous one to leave it.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  while (participants_.load(std::memory_order_seq_cst) != 0) CpuRelax();
  fn_ = &fn;
  n_chunks_ = n_chunks;
  done_.store(0, std::memory_order_relaxed);
  next_.store(0, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  WakeSleepers();
  for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) {
    fn(c);
    done_.fetch_add(1, std::memory_order_release);
  }
  if (done_.load(std::memory_order_acquire) == n_chunks) return 0;
  auto t0 = std::chrono::steady_clock::now();
  while (done_.load(std::memory_order_acquire) != n_chunks) CpuRelax();
  const auto waited = std::chrono::steady_clock::now() - t0;
  waited_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count(), std::memory_order_relaxed);
  return std::chrono::duration<double>(waited).count();
}

ThreadPool& ThreadPool::Default() {
  static ThreadPool* pool = [] {
    int n = int(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("ATTUNE_THREADS")) n = std::atoi(env);
    if (n < 1) n = 1;
    return new ThreadPool(n);
  }();
  return *pool;
}

}  // namespace attune::runtime::kernels
