// Traffic: the bounded request queue in front of generation, and the
// "serving comes first" signal the training thread waits on.
//
// A chat request enters (refused when max_concurrent + max_queue are already
// in), waits for one of max_concurrent running slots, and leaves. Training
// calls WaitForQuiet() between micro-steps: it returns once no request has
// been in for quiet_seconds (or at shutdown). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace attune::service {

class Traffic {
 public:
  Traffic(int max_concurrent, int max_queue, double quiet_seconds);

  // Holds one admitted request until destroyed.
  class Ticket {
   public:
    explicit Ticket(Traffic* t) : t_(t) {}
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // Blocks until a running slot is free.
    void WaitToRun();

   private:
    Traffic* t_;
    bool running_ = false;
  };

  // Null when the queue is full (the caller answers 503).
  std::unique_ptr<Ticket> Enter();
  // Returns whether it waited (training paused for serving).
  bool WaitForQuiet();
  void Shutdown();

  int in_flight() const;
  int queued() const;
  uint64_t pauses() const;

 private:
  using Clock = std::chrono::steady_clock;
  const int max_concurrent_, max_queue_;
  const Clock::duration quiet_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int in_ = 0, running_ = 0;
  uint64_t pauses_ = 0;
  bool shutdown_ = false;
  Clock::time_point last_left_{};
};

}  // namespace attune::service
