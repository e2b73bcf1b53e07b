#include "attune/service/schedule.h"

#include <ctime>

namespace attune::service {

namespace {

// "HH:MM" -> minutes of the day, or -1.
int ParseClock(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') return -1;
  for (int i : {0, 1, 3, 4}) {
    if (s[i] < '0' || s[i] > '9') return -1;
  }
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return -1;
  return h * 60 + m;
}

}  // namespace

Result<Schedule> Schedule::Parse(const std::string& text) {
  Schedule s;
  if (text.empty()) return s;
  auto dash = text.find('-');
  int start = dash == std::string::npos ? -1 : ParseClock(text.substr(0, dash));
  int end = dash == std::string::npos ? -1 : ParseClock(text.substr(dash + 1));
  if (start < 0 || end < 0 || start == end) {
    return InvalidArgumentError("schedule '" + text +
                                "' is not a local-time interval \"HH:MM-HH:MM\" (hint: \"01:00-06:00\"; "
                                "use \"\" for any time)");
  }
  s.start_ = start;
  s.end_ = end;
  s.text_ = text;
  return s;
}

bool Schedule::Allows(int minute) const {
  if (any_time()) return true;
  if (start_ < end_) return minute >= start_ && minute < end_;
  return minute >= start_ || minute < end_;  // wraps past midnight
}

bool Schedule::AllowsNow() const {
  if (any_time()) return true;
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  return Allows(local.tm_hour * 60 + local.tm_min);
}

}  // namespace attune::service
