// Options of the health watch (health.h), in a plain header so that
// app-facing option structs need not see the monitor or the registry.
#pragma once

namespace attune::adapters {

struct HealthOptions {
  // Rated responses of the new version judged at once. Default: 50
  int window = 50;
  // Absolute thumbs-down rate increase over the previous version that
  // triggers a rollback (0.10: from 20 % to more than 30 %). Default: 0.10
  double max_down_rate_increase = 0.10;
  // Ratings the previous version needs for its own rate to count.
  // Default: 20
  int min_baseline_ratings = 20;
  // The previous version's rate when it has too few ratings. Default: 0.25
  double fallback_baseline_rate = 0.25;
};

}  // namespace attune::adapters
