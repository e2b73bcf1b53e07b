// SHA-256 (FIPS 180-4), computed by OpenSSL's EVP interface. Streaming; one
// object per digest, not thread-safe. Move-only.
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
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t len);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Finishes the digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> Finish();
  // Lower-case hex of Finish().
  std::string FinishHex();

 private:
  // An EVP_MD_CTX*, kept opaque so that OpenSSL's headers stay out of ours.
  void* ctx_ = nullptr;
};

std::string Sha256Hex(std::string_view data);

// Hashes a whole file without loading it at once.
Result<std::string> Sha256FileHex(const std::string& path);

}  // namespace attune
