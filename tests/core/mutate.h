// Seeded mutations of a valid input, for the parser fuzz tests (after the
// GGUF mutation test): truncation, byte flips concentrated on the head of
// the input (where a parser's decisions are), 0xFF runs, flips anywhere,
// and for text formats digit runs that turn numbers huge or negative.
// ATTUNE_FUZZ_ITERATIONS overrides the iteration count (CI runs a few
// thousand per parser under AddressSanitizer and UBSan).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>

namespace attune::testing {

inline int FuzzIterations(int default_iterations) {
  if (const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS"); n && std::atoi(n) > 0) return std::atoi(n);
  return default_iterations;
}

inline std::string Mutate(const std::string& orig, std::mt19937& rng, int iteration, size_t head = 2048) {
  std::string m = orig;
  if (m.empty()) return m;
  const size_t h = std::min(m.size(), head);
  switch (iteration % 6) {
    case 0:
      m.resize(rng() % m.size());
      break;
    case 1:
    case 2: {
      const int flips = 1 + int(rng() % 8);
      for (int k = 0; k < flips; ++k) m[rng() % h] = char(iteration % 6 == 2 ? 0xFF : rng());
      break;
    }
    case 3: {
      const int flips = 1 + int(rng() % 8);
      for (int k = 0; k < flips; ++k) m[rng() % m.size()] = char(rng());
      break;
    }
    case 4: {
      // A digit becomes a long number, or a minus sign.
      for (int tries = 0; tries < 64; ++tries) {
        size_t p = rng() % h;
        if (m[p] >= '0' && m[p] <= '9') {
          m.replace(p, 1, rng() % 2 ? "99999999999999999999" : "-1");
          break;
        }
      }
      break;
    }
    default: {
      // Structural characters swapped: quotes, brackets, commas.
      const char kChars[] = "\"{}[],:0 ";
      const int flips = 1 + int(rng() % 4);
      for (int k = 0; k < flips; ++k) m[rng() % h] = kChars[rng() % (sizeof(kChars) - 1)];
      break;
    }
  }
  return m;
}

}  // namespace attune::testing
