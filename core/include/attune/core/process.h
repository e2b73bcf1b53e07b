// Facts about the running process.
#pragma once

namespace attune {

// Peak resident set size of this process (VmHWM of /proc/self/status), in
// MiB; 0 where it cannot be read.
double PeakRssMb();

}  // namespace attune
