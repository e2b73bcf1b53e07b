// Device keys: this device's Ed25519 key pair and the public keys of the
// user's other devices that it trusts (DESIGN.md "Data directory": keys/).
//
// Layout of `dir` (normally <data_dir>/keys):
//   device.key            this device's private key (mode 0600), created on
//                         first use; "attune-device-secret-key v1 <hex seed>"
//   device.pub            its public key line (what `attune keys show` prints)
//   trusted/<id>.pub      public key lines of trusted peers
//   revoked/<id>.pub      revoked peers (moved here by Revoke)
// A public key line is "attune-device-key v1 <device-id> <hex public key>";
// the device id is the first 16 hex chars of SHA-256(public key), so a line
// whose id does not match its key is refused.
//
// Signatures are Ed25519 (RFC 8032) computed by OpenSSL 3.
//
// Thread safety: a KeyStore may be used from several threads for Sign and
// lookups; Trust and Revoke change files and should be serialised by the
// caller. Several processes may open one `dir`: key creation is atomic
// (the first creator wins, the others read its key).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attune/core/result.h"

namespace attune::export_ {

struct PeerKey {
  std::string device_id;
  std::string public_key;  // 32 raw bytes
  bool revoked = false;
  std::string line() const;  // the public key line
};

// Parses a public key line (surrounding whitespace ignored). InvalidArgument
// naming `source` when malformed or when the id does not match the key.
Result<PeerKey> ParsePublicKeyLine(std::string_view text, const std::string& source);

// True when `signature` is a valid Ed25519 signature of `message` by
// `public_key` (32 raw bytes).
bool VerifyEd25519(std::string_view public_key, std::string_view message, std::string_view signature);

class KeyStore {
 public:
  // Opens `dir`, creating it and this device's key pair when absent.
  // DataLoss: device.key is damaged. IoError: cannot create files.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& dir);
  ~KeyStore();

  const std::string& dir() const;
  const PeerKey& device() const;  // this device's id and public key

  // Ed25519 signature (64 bytes) of `message` with this device's key.
  Result<std::string> Sign(std::string_view message) const;

  // Adds the peer of a public key line. AlreadyExists is not an error: the
  // same key trusted twice is OK. FailedPrecondition: the key was revoked
  // (delete revoked/<id>.pub to trust it again) or is this device's own.
  Result<PeerKey> Trust(std::string_view line, const std::string& source);
  // Moves a trusted key to revoked/. NotFound when not trusted.
  Status Revoke(const std::string& device_id);
  // Trusted and revoked peers, by device id.
  std::vector<PeerKey> List() const;

  // The public key of a signer this device accepts: itself or a trusted,
  // unrevoked peer. FailedPrecondition naming the id otherwise ("revoked" or
  // "not trusted", with a hint).
  Result<std::string> AcceptedKey(const std::string& device_id) const;

 private:
  struct Impl;
  explicit KeyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attune::export_
