#include "attune/trainer/window.h"

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace attune::trainer {
namespace {

std::optional<std::string> ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!in || !std::getline(in, s)) return std::nullopt;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::optional<double> ReadNumber(const std::string& path) {
  auto s = ReadLine(path);
  if (!s) return std::nullopt;
  try {
    return std::stod(*s);
  } catch (...) {
    return std::nullopt;
  }
}

// Total and idle jiffies from the "cpu" line of /proc/stat.
bool ReadCpu(const std::string& path, uint64_t* total, uint64_t* idle) {
  auto line = ReadLine(path);
  if (!line || line->rfind("cpu ", 0) != 0) return false;
  std::istringstream ss(line->substr(4));
  uint64_t v, sum = 0, i = 0, idl = 0;
  while (ss >> v) {
    sum += v;
    if (i == 3 || i == 4) idl += v;  // idle + iowait
    ++i;
  }
  if (i < 4) return false;
  *total = sum;
  *idle = idl;
  return true;
}

// This process's user + system jiffies (/proc/self/stat fields 14, 15).
uint64_t SelfJiffies() {
  auto line = ReadLine("/proc/self/stat");
  if (!line) return 0;
  size_t rp = line->rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream ss(line->substr(rp + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && ss >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return utime + stime;
}

}  // namespace

LinuxDeviceStateSource::LinuxDeviceStateSource(LinuxSourceOptions options)
    : o_(std::move(options)), idle_since_(std::chrono::steady_clock::now()) {}

DeviceState LinuxDeviceStateSource::Read() {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceState s;
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string ps = o_.sysfs_root + "/class/power_supply";
  bool saw_supply = false;
  for (const auto& e : fs::directory_iterator(ps, ec)) {
    const std::string dir = e.path().string();
    auto type = ReadLine(dir + "/type");
    if (!type) continue;
    saw_supply = true;
    if (*type == "Battery") {
      if (auto cap = ReadNumber(dir + "/capacity")) s.battery_percent = *cap;
      if (auto st = ReadLine(dir + "/status")) {
        if (*st == "Charging" || *st == "Full") s.external_power = true;
        else if (*st == "Discharging" && !s.external_power) s.external_power = false;
      }
    } else {  // Mains, USB, Wireless: online = 1 means plugged in
      if (auto on = ReadNumber(dir + "/online")) {
        if (*on >= 1) s.external_power = true;
        else if (!s.external_power) s.external_power = false;
      }
    }
  }
  (void)saw_supply;
  for (const auto& e : fs::directory_iterator(o_.sysfs_root + "/class/thermal", ec)) {
    if (e.path().filename().string().rfind("thermal_zone", 0) != 0) continue;
    if (auto t = ReadNumber(e.path().string() + "/temp")) {
      double c = *t / 1000.0;  // millidegrees Celsius
      if (!s.temperature_c || c > *s.temperature_c) s.temperature_c = c;
    }
  }
  uint64_t total, idle;
  if (ReadCpu(o_.proc_stat, &total, &idle)) {
    const uint64_t self = SelfJiffies();
    const auto now = std::chrono::steady_clock::now();
    if (have_sample_ && total > last_total_) {
      const double dt = double(total - last_total_);
      const double busy = dt - double(idle - last_idle_) - double(self - last_self_);
      if (busy / dt > o_.busy_cpu_fraction) idle_since_ = now;
    }
    last_total_ = total;
    last_idle_ = idle;
    last_self_ = self;
    have_sample_ = true;
    s.idle_minutes = std::chrono::duration<double>(now - idle_since_).count() / 60.0;
  }
  std::time_t t = std::time(nullptr);
  std::tm lt;
  if (localtime_r(&t, &lt)) s.local_hour = lt.tm_hour;
  return s;
}

void PushedDeviceStateSource::Set(const DeviceState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = state;
}

DeviceState PushedDeviceStateSource::Read() {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

DeviceState ScriptedDeviceStateSource::Read() {
  std::lock_guard<std::mutex> lock(mu_);
  ++reads_;
  if (states_.empty()) return DeviceState{};
  DeviceState s = states_.front();
  if (states_.size() > 1) states_.pop_front();
  return s;
}

WindowDecision EvaluateWindow(const WindowPolicy& p, const DeviceState& s, int64_t new_events) {
  WindowDecision d;
  auto check = [&](bool known, bool ok, const std::string& what, const std::string& why) {
    if (!known) {
      d.unknown.push_back(what);
      if (p.unknown == UnknownPolicy::kDeny) d.closed_because.push_back(what + " is unknown");
      return;
    }
    if (!ok) d.closed_because.push_back(why);
  };
  if (p.require_external_power) {
    check(s.external_power.has_value(), s.external_power.value_or(false), "external power", "not on external power");
  }
  check(s.battery_percent.has_value(), s.battery_percent.value_or(0) >= p.min_battery_percent, "battery level",
        "battery below " + std::to_string(int(p.min_battery_percent)) + "%");
  check(s.idle_minutes.has_value(), s.idle_minutes.value_or(0) >= p.min_idle_minutes, "idle time",
        "device idle for less than " + std::to_string(int(p.min_idle_minutes)) + " min");
  check(s.temperature_c.has_value(), s.temperature_c.value_or(0) <= p.max_temperature_c, "temperature",
        "temperature above " + std::to_string(int(p.max_temperature_c)) + " C");
  if (p.start_hour >= 0 && p.end_hour >= 0) {
    const int h = s.local_hour;
    bool inside = p.start_hour <= p.end_hour ? (h >= p.start_hour && h < p.end_hour)
                                             : (h >= p.start_hour || h < p.end_hour);  // wraps midnight
    check(h >= 0, inside, "local time", "outside the allowed hours");
  }
  if (new_events < p.min_new_events) {
    d.closed_because.push_back(std::to_string(new_events) + " new events, need " + std::to_string(p.min_new_events));
  }
  d.open = d.closed_because.empty();
  return d;
}

Result<WindowPolicy> ParseWindowPolicy(const std::string& text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgumentError("window policy '" + where + "' is not a JSON object");
  WindowPolicy p;
  static const std::set<std::string> kKeys = {"require_external_power", "min_battery_percent", "min_idle_minutes",
                                              "max_temperature_c", "hours", "min_new_events", "unknown"};
  for (auto& [k, v] : j.items()) {
    auto bad = [&](const std::string& want) {
      return InvalidArgumentError("window policy '" + where + "': key '" + k + "' must be " + want);
    };
    if (!kKeys.count(k)) return InvalidArgumentError("window policy '" + where + "': unknown key '" + k + "'");
    if (k == "require_external_power") {
      if (!v.is_boolean()) return bad("true or false");
      p.require_external_power = v.get<bool>();
    } else if (k == "min_battery_percent" || k == "min_idle_minutes" || k == "max_temperature_c") {
      if (!v.is_number()) return bad("a number");
      double x = v.get<double>();
      if (k == "min_battery_percent") {
        if (x < 0 || x > 100) return bad("between 0 and 100");
        p.min_battery_percent = x;
      } else if (k == "min_idle_minutes") {
        if (x < 0) return bad(">= 0");
        p.min_idle_minutes = x;
      } else {
        p.max_temperature_c = x;
      }
    } else if (k == "hours") {
      if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer() || v[0].get<int>() < 0 ||
          v[0].get<int>() > 23 || v[1].get<int>() < 0 || v[1].get<int>() > 24) {
        return bad("[start_hour, end_hour] with hours 0..24");
      }
      p.start_hour = v[0].get<int>();
      p.end_hour = v[1].get<int>();
    } else if (k == "min_new_events") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) return bad("an integer >= 0");
      p.min_new_events = v.get<int64_t>();
    } else if (k == "unknown") {
      if (!v.is_string() || (v.get<std::string>() != "allow" && v.get<std::string>() != "deny")) return bad("\"allow\" or \"deny\"");
      p.unknown = v.get<std::string>() == "allow" ? UnknownPolicy::kAllow : UnknownPolicy::kDeny;
    }
  }
  return p;
}

}  // namespace attune::trainer
