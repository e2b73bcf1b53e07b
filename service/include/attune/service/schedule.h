// Training schedule: the daily local-time interval in which a training
// window may open, "HH:MM-HH:MM" (end exclusive; an interval that ends
// before it starts wraps past midnight, "22:30-06:00"). Empty = any time.
#pragma once

#include <string>

#include "attune/core/result.h"

namespace attune::service {

class Schedule {
 public:
  Schedule() = default;  // any time
  static Result<Schedule> Parse(const std::string& text);

  bool any_time() const { return start_ < 0; }
  // `minute_of_day` in [0, 1440).
  bool Allows(int minute_of_day) const;
  // Allows() at the current local time.
  bool AllowsNow() const;
  const std::string& text() const { return text_; }

 private:
  int start_ = -1, end_ = -1;  // minutes of the day
  std::string text_;
};

}  // namespace attune::service
