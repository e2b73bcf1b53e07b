// Training windows: train only while the device is on external power,
// charged enough, idle, cool, inside the allowed hours, and there is enough
// new feedback.
//
// Device state comes from a DeviceStateSource: the Linux one reads
// /sys/class/power_supply/*/{type,status,online,capacity},
// /sys/class/thermal/thermal_zone*/temp and /proc/stat; a host app (a phone)
// pushes state through PushedDeviceStateSource; tests script it. A reading
// that is missing is "unknown", and WindowPolicy::unknown decides what an
// unknown condition means — never a crash.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "attune/core/result.h"

namespace attune::trainer {

struct DeviceState {
  std::optional<bool> external_power;    // charging, full, or mains online
  std::optional<double> battery_percent;
  std::optional<double> idle_minutes;    // how long the device has been idle
  std::optional<double> temperature_c;   // hottest thermal zone
  int local_hour = -1;                   // 0..23; -1 unknown
};

class DeviceStateSource {
 public:
  virtual ~DeviceStateSource() = default;
  // Thread-safe.
  virtual DeviceState Read() = 0;
};

struct LinuxSourceOptions {
  std::string sysfs_root = "/sys";        // Default: /sys (tests point it elsewhere)
  std::string proc_stat = "/proc/stat";   // Default: /proc/stat
  // The device counts as busy while CPU use by other processes than this one
  // is above this fraction. Default: 0.3
  double busy_cpu_fraction = 0.3;
};

// Reads the Linux sysfs/procfs files above. Idle time is the time since the
// CPU (less this process's own use, so training does not count) was last
// busy; it starts at 0 when the source is created.
class LinuxDeviceStateSource : public DeviceStateSource {
 public:
  explicit LinuxDeviceStateSource(LinuxSourceOptions options = {});
  DeviceState Read() override;

 private:
  LinuxSourceOptions o_;
  std::mutex mu_;
  uint64_t last_total_ = 0, last_idle_ = 0, last_self_ = 0;
  std::chrono::steady_clock::time_point idle_since_;
  bool have_sample_ = false;
};

// State pushed by the host application (thread-safe).
class PushedDeviceStateSource : public DeviceStateSource {
 public:
  void Set(const DeviceState& state);
  DeviceState Read() override;

 private:
  std::mutex mu_;
  DeviceState state_;
};

// Returns the scripted states in order, then repeats the last (tests).
class ScriptedDeviceStateSource : public DeviceStateSource {
 public:
  explicit ScriptedDeviceStateSource(std::vector<DeviceState> states) : states_(states.begin(), states.end()) {}
  DeviceState Read() override;
  int reads() const { return reads_; }

 private:
  std::mutex mu_;
  std::deque<DeviceState> states_;
  int reads_ = 0;
};

enum class UnknownPolicy {
  kAllow,  // an unknown reading does not close the window (desktops have no battery)
  kDeny,   // an unknown reading closes the window (strict)
};

struct WindowPolicy {
  bool require_external_power = true;  // Default: true
  double min_battery_percent = 50;     // Default: 50
  double min_idle_minutes = 5;         // Default: 5
  double max_temperature_c = 45;       // Default: 45
  int start_hour = -1;                 // allowed hours [start, end), local time; -1: any. Default: -1
  int end_hour = -1;                   // Default: -1
  int64_t min_new_events = 1;          // Default: 1
  UnknownPolicy unknown = UnknownPolicy::kAllow;  // Default: kAllow
};

struct WindowDecision {
  bool open = false;
  std::vector<std::string> closed_because;  // each failing condition
  std::vector<std::string> unknown;         // conditions that could not be read
};

WindowDecision EvaluateWindow(const WindowPolicy& policy, const DeviceState& state, int64_t new_events);

// Reads a policy from JSON, e.g. {"require_external_power": true,
// "min_battery_percent": 40, "min_idle_minutes": 10, "max_temperature_c": 42,
// "hours": [22, 6], "min_new_events": 8, "unknown": "deny"}. Unknown keys and
// wrong types are InvalidArgument naming the key.
Result<WindowPolicy> ParseWindowPolicy(const std::string& json_text, const std::string& where);

}  // namespace attune::trainer
