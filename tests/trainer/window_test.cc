#include "attune/trainer/window.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace attune::trainer {
namespace {

DeviceState Good() {
  DeviceState s;
  s.external_power = true;
  s.battery_percent = 80;
  s.idle_minutes = 30;
  s.temperature_c = 35;
  s.local_hour = 2;
  return s;
}

TEST(WindowTest, OpensWhenEveryConditionHolds) {
  WindowDecision d = EvaluateWindow(WindowPolicy{}, Good(), 5);
  EXPECT_TRUE(d.open);
  EXPECT_TRUE(d.closed_because.empty());
}

TEST(WindowTest, EachFailingConditionClosesItWithAReason) {
  WindowPolicy p;
  p.min_new_events = 3;
  DeviceState s = Good();
  s.external_power = false;
  s.battery_percent = 20;
  s.idle_minutes = 1;
  s.temperature_c = 60;
  WindowDecision d = EvaluateWindow(p, s, 2);
  EXPECT_FALSE(d.open);
  EXPECT_EQ(d.closed_because.size(), 5u);
}

TEST(WindowTest, UnknownReadingsFollowThePolicy) {
  DeviceState s;  // nothing known (a desktop without sysfs power data)
  s.idle_minutes = 10;
  WindowPolicy allow;
  EXPECT_TRUE(EvaluateWindow(allow, s, 1).open);
  EXPECT_EQ(EvaluateWindow(allow, s, 1).unknown.size(), 3u);
  WindowPolicy deny;
  deny.unknown = UnknownPolicy::kDeny;
  EXPECT_FALSE(EvaluateWindow(deny, s, 1).open);
}

TEST(WindowTest, HoursMayWrapMidnight) {
  WindowPolicy p;
  p.start_hour = 22;
  p.end_hour = 6;
  DeviceState s = Good();
  s.local_hour = 23;
  EXPECT_TRUE(EvaluateWindow(p, s, 1).open);
  s.local_hour = 5;
  EXPECT_TRUE(EvaluateWindow(p, s, 1).open);
  s.local_hour = 12;
  EXPECT_FALSE(EvaluateWindow(p, s, 1).open);
}

TEST(WindowTest, ParsesPolicyFilesAndNamesBadKeys) {
  auto p = ParseWindowPolicy(R"({"min_battery_percent": 40, "hours": [22, 6], "unknown": "deny", "min_new_events": 8})", "p.json");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->min_battery_percent, 40);
  EXPECT_EQ(p->start_hour, 22);
  EXPECT_EQ(p->unknown, UnknownPolicy::kDeny);
  auto bad = ParseWindowPolicy(R"({"min_battery_percent": 140})", "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("min_battery_percent"), std::string::npos);
  auto unknown = ParseWindowPolicy(R"({"battery": 1})", "p.json");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'battery'"), std::string::npos);
}

void Write(const std::filesystem::path& p, const std::string& s) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << s << "\n";
}

TEST(LinuxDeviceStateSourceTest, ReadsPowerSupplyAndThermalFiles) {
  auto root = std::filesystem::temp_directory_path() / ("attune_sysfs_" + std::to_string(::getpid()));
  Write(root / "class/power_supply/BAT0/type", "Battery");
  Write(root / "class/power_supply/BAT0/capacity", "76");
  Write(root / "class/power_supply/BAT0/status", "Charging");
  Write(root / "class/thermal/thermal_zone0/temp", "41000");
  Write(root / "class/thermal/thermal_zone1/temp", "47500");
  Write(root / "stat", "cpu  100 0 100 1000 0 0 0 0 0 0");
  LinuxSourceOptions o;
  o.sysfs_root = root.string();
  o.proc_stat = (root / "stat").string();
  LinuxDeviceStateSource src(o);
  DeviceState s = src.Read();
  EXPECT_EQ(s.external_power, true);
  EXPECT_EQ(s.battery_percent, 76);
  EXPECT_DOUBLE_EQ(*s.temperature_c, 47.5);
  ASSERT_TRUE(s.idle_minutes.has_value());
  std::filesystem::remove_all(root);
}

TEST(LinuxDeviceStateSourceTest, MissingFilesAreUnknownNotErrors) {
  LinuxSourceOptions o;
  o.sysfs_root = "/nonexistent-attune";
  o.proc_stat = "/nonexistent-attune/stat";
  LinuxDeviceStateSource src(o);
  DeviceState s = src.Read();
  EXPECT_FALSE(s.external_power.has_value());
  EXPECT_FALSE(s.battery_percent.has_value());
  EXPECT_FALSE(s.temperature_c.has_value());
  EXPECT_FALSE(s.idle_minutes.has_value());
}

TEST(ScriptedDeviceStateSourceTest, PlaysStatesInOrderThenHoldsTheLast) {
  DeviceState a = Good(), b = Good();
  b.external_power = false;
  ScriptedDeviceStateSource src({a, b});
  EXPECT_EQ(src.Read().external_power, true);
  EXPECT_EQ(src.Read().external_power, false);
  EXPECT_EQ(src.Read().external_power, false);
  EXPECT_EQ(src.reads(), 3);
}

}  // namespace
}  // namespace attune::trainer
