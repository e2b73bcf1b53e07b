// SHA-256 through OpenSSL 3 (EVP_sha256): no hand-written crypto.
#include "attune/core/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <utility>

#include "attune/core/file.h"
#include "attune/core/log.h"

namespace attune {
namespace {

EVP_MD_CTX* Ctx(void* p) { return static_cast<EVP_MD_CTX*>(p); }

// OpenSSL fails these calls only on allocation failure or a broken library;
// there is no way to continue hashing correctly, so stop loudly.
void Check(int ok, const char* what) {
  if (ok != 1) {
    ATTUNE_LOG(kError, "OpenSSL SHA-256: " << what << " failed");
    std::abort();
  }
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  Check(ctx_ != nullptr, "EVP_MD_CTX_new");
  Check(EVP_DigestInit_ex(Ctx(ctx_), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() { EVP_MD_CTX_free(Ctx(ctx_)); }

Sha256::Sha256(Sha256&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}

Sha256& Sha256::operator=(Sha256&& other) noexcept {
  std::swap(ctx_, other.ctx_);
  return *this;
}

void Sha256::Update(const void* data, size_t len) {
  if (len == 0) return;
  Check(EVP_DigestUpdate(Ctx(ctx_), data, len), "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::Finish() {
  std::array<uint8_t, 32> out{};
  unsigned int n = 0;
  Check(EVP_DigestFinal_ex(Ctx(ctx_), out.data(), &n), "EVP_DigestFinal_ex");
  Check(n == out.size() ? 1 : 0, "digest length");
  return out;
}

std::string Sha256::FinishHex() {
  static const char* kHex = "0123456789abcdef";
  auto d = Finish();
  std::string s;
  for (uint8_t b : d) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

Result<std::string> Sha256FileHex(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile mf, MappedFile::Open(path));
  Sha256 h;
  h.Update(mf.data(), mf.size());
  return h.FinishHex();
}

}  // namespace attune
