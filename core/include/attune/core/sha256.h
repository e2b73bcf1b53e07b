// SHA-256 (FIPS 180-4). Streaming; one object per digest, not thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "attune/core/result.h"

namespace attune {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t len);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Finishes the digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> Finish();
  // Lower-case hex of Finish().
  std::string FinishHex();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string Sha256Hex(std::string_view data);

// Hashes a whole file without loading it at once.
Result<std::string> Sha256FileHex(const std::string& path);

}  // namespace attune
