#include "service/src/traffic.h"

namespace attune::service {

Traffic::Traffic(int max_concurrent, int max_queue, double quiet_seconds)
    : max_concurrent_(max_concurrent),
      max_queue_(max_queue),
      quiet_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(quiet_seconds))) {}

std::unique_ptr<Traffic::Ticket> Traffic::Enter() {
  std::lock_guard<std::mutex> l(mu_);
  if (in_ >= max_concurrent_ + max_queue_) return nullptr;
  ++in_;
  return std::make_unique<Ticket>(this);
}

void Traffic::Ticket::WaitToRun() {
  std::unique_lock<std::mutex> l(t_->mu_);
  t_->cv_.wait(l, [&] { return t_->running_ < t_->max_concurrent_; });
  ++t_->running_;
  running_ = true;
}

Traffic::Ticket::~Ticket() {
  {
    std::lock_guard<std::mutex> l(t_->mu_);
    --t_->in_;
    if (running_) --t_->running_;
    t_->last_left_ = Clock::now();
  }
  t_->cv_.notify_all();
}

bool Traffic::WaitForQuiet() {
  std::unique_lock<std::mutex> l(mu_);
  bool waited = false;
  while (!shutdown_) {
    if (in_ > 0) {
      if (!waited) ++pauses_;
      waited = true;
      cv_.wait(l);
      continue;
    }
    auto quiet_at = last_left_ + quiet_;
    if (Clock::now() >= quiet_at) break;
    if (!waited) ++pauses_;
    waited = true;
    cv_.wait_until(l, quiet_at);
  }
  return waited;
}

void Traffic::Shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

int Traffic::in_flight() const {
  std::lock_guard<std::mutex> l(mu_);
  return running_;
}

int Traffic::queued() const {
  std::lock_guard<std::mutex> l(mu_);
  return in_ - running_;
}

uint64_t Traffic::pauses() const {
  std::lock_guard<std::mutex> l(mu_);
  return pauses_;
}

}  // namespace attune::service
