#include "attune/export/keys.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "src/hex.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;
constexpr char kPubPrefix[] = "attune-device-key";
constexpr char kSecretPrefix[] = "attune-device-secret-key";

std::string DeviceIdOf(std::string_view public_key) { return Sha256Hex(public_key).substr(0, 16); }

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

Result<std::string> PublicFromSeed(const std::string& seed) {
  Pkey k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()),
                                      seed.size()));
  if (!k) return InternalError("OpenSSL could not load an Ed25519 private key");
  std::string pub(32, '\0');
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(k.get(), reinterpret_cast<unsigned char*>(pub.data()), &len) != 1 || len != 32) {
    return InternalError("OpenSSL could not derive an Ed25519 public key");
  }
  return pub;
}

// Creates `path` with mode 0600 holding `contents`, only if it does not exist:
// written under a temporary name and hard-linked into place, so the file is
// complete whenever it is visible. Returns false when it already existed.
Result<bool> CreateExclusive(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = ::write(fd, contents.data(), contents.size()) == ssize_t(contents.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return IoError("cannot write " + tmp);
  }
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) return false;
  if (rc != 0) return IoError("cannot create " + path + ": " + std::strerror(err));
  RETURN_IF_ERROR(SyncDir(fs::path(path).parent_path().string()));
  return true;
}

Result<std::string> ReadSeed(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::istringstream in(text);
  std::string prefix, version, hex;
  in >> prefix >> version >> hex;
  auto seed = internal::FromHex(hex);
  if (prefix != kSecretPrefix || version != "v1" || !seed || seed->size() != 32) {
    return DataLossError(path + ": not an attune device secret key (expected '" + std::string(kSecretPrefix) +
                         " v1 <64 hex>')");
  }
  return *seed;
}

}  // namespace

std::string PeerKey::line() const {
  return std::string(kPubPrefix) + " v1 " + device_id + " " + internal::ToHex(public_key);
}

Result<PeerKey> ParsePublicKeyLine(std::string_view text, const std::string& source) {
  std::istringstream in{std::string(text)};
  std::string prefix, version, id, hex, extra;
  in >> prefix >> version >> id >> hex >> extra;
  auto pub = internal::FromHex(hex);
  if (prefix != kPubPrefix || version != "v1" || !pub || pub->size() != 32 || !extra.empty()) {
    return InvalidArgumentError(source + ": not a device public key (expected one line '" + std::string(kPubPrefix) +
                                " v1 <device-id> <64 hex>', as `attune keys show` prints)");
  }
  if (DeviceIdOf(*pub) != id) {
    return InvalidArgumentError(source + ": device id " + id + " does not match its public key (expected " +
                                DeviceIdOf(*pub) + ")");
  }
  return PeerKey{id, *pub, false};
}

bool VerifyEd25519(std::string_view public_key, std::string_view message, std::string_view signature) {
  if (public_key.size() != 32 || signature.size() != 64) return false;
  Pkey k(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                     reinterpret_cast<const unsigned char*>(public_key.data()), public_key.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!k || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

struct KeyStore::Impl {
  std::string dir;
  std::string seed;
  PeerKey device;
};

KeyStore::KeyStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KeyStore::~KeyStore() = default;
const std::string& KeyStore::dir() const { return impl_->dir; }
const PeerKey& KeyStore::device() const { return impl_->device; }

Result<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& dir) {
  RETURN_IF_ERROR(MakeDirs(dir + "/trusted"));
  RETURN_IF_ERROR(MakeDirs(dir + "/revoked"));
  ::chmod(dir.c_str(), 0700);
  const std::string key_path = dir + "/device.key";
  if (!PathExists(key_path)) {
    std::string seed(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(seed.data()), 32) != 1) {
      return InternalError("OpenSSL could not produce random bytes for a device key");
    }
    ASSIGN_OR_RETURN(bool created, CreateExclusive(key_path, std::string(kSecretPrefix) + " v1 " + internal::ToHex(seed) + "\n"));
    (void)created;  // another process may have won the race; read whichever key is there
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  ASSIGN_OR_RETURN(impl->seed, ReadSeed(key_path));
  ASSIGN_OR_RETURN(impl->device.public_key, PublicFromSeed(impl->seed));
  impl->device.device_id = DeviceIdOf(impl->device.public_key);
  const std::string pub_path = dir + "/device.pub";
  if (!PathExists(pub_path)) RETURN_IF_ERROR(WriteFileAtomic(pub_path, impl->device.line() + "\n"));
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(impl)));
}

Result<std::string> KeyStore::Sign(std::string_view message) const {
  Pkey k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                      reinterpret_cast<const unsigned char*>(impl_->seed.data()), 32));
  MdCtx ctx(EVP_MD_CTX_new());
  std::string sig(64, '\0');
  size_t len = sig.size();
  if (!k || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      len != 64) {
    return InternalError("OpenSSL could not sign with the device key");
  }
  return sig;
}

Result<PeerKey> KeyStore::Trust(std::string_view line, const std::string& source) {
  ASSIGN_OR_RETURN(PeerKey k, ParsePublicKeyLine(line, source));
  if (k.device_id == impl_->device.device_id) {
    return FailedPreconditionError(source + ": this is this device's own key (" + k.device_id + ")");
  }
  if (PathExists(impl_->dir + "/revoked/" + k.device_id + ".pub")) {
    return FailedPreconditionError(source + ": device " + k.device_id + " was revoked (hint: delete " + impl_->dir +
                                   "/revoked/" + k.device_id + ".pub to trust it again)");
  }
  RETURN_IF_ERROR(WriteFileAtomic(impl_->dir + "/trusted/" + k.device_id + ".pub", k.line() + "\n"));
  return k;
}

Status KeyStore::Revoke(const std::string& device_id) {
  const std::string from = impl_->dir + "/trusted/" + device_id + ".pub";
  if (device_id.find('/') != std::string::npos || !PathExists(from)) {
    return NotFoundError("device " + device_id + " is not trusted (see `attune keys ls`)");
  }
  return RenameDurable(from, impl_->dir + "/revoked/" + device_id + ".pub");
}

std::vector<PeerKey> KeyStore::List() const {
  std::vector<PeerKey> out;
  for (const char* sub : {"trusted", "revoked"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(impl_->dir + "/" + sub, ec)) {
      if (e.path().extension() != ".pub") continue;
      auto text = ReadFile(e.path().string());
      if (!text.ok()) continue;
      auto k = ParsePublicKeyLine(*text, e.path().string());
      if (!k.ok()) continue;
      k->revoked = std::string(sub) == "revoked";
      out.push_back(*k);
    }
  }
  std::sort(out.begin(), out.end(), [](const PeerKey& a, const PeerKey& b) { return a.device_id < b.device_id; });
  return out;
}

Result<std::string> KeyStore::AcceptedKey(const std::string& device_id) const {
  if (device_id == impl_->device.device_id) return impl_->device.public_key;
  if (device_id.find('/') == std::string::npos && !device_id.empty()) {
    if (PathExists(impl_->dir + "/revoked/" + device_id + ".pub")) {
      return FailedPreconditionError("signer device " + device_id + " was revoked");
    }
    const std::string path = impl_->dir + "/trusted/" + device_id + ".pub";
    if (PathExists(path)) {
      ASSIGN_OR_RETURN(std::string text, ReadFile(path));
      ASSIGN_OR_RETURN(PeerKey k, ParsePublicKeyLine(text, path));
      if (k.device_id == device_id) return k.public_key;
    }
  }
  return FailedPreconditionError("signer device '" + device_id +
                                 "' is not trusted (hint: on that device run `attune keys show`, then here `attune keys "
                                 "trust FILE`)");
}

}  // namespace attune::export_
