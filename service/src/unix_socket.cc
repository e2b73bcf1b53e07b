#include "service/src/unix_socket.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace attune::service {
namespace {

Status Errno(const std::string& what, const std::string& path, int err) {
  return UnavailableError(what + " " + path + ": " + std::strerror(err));
}

sockaddr_un Address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

// Whether a process accepts connections on the socket file `path`.
bool SomeoneListens(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const sockaddr_un a = Address(path);
  const bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

}  // namespace

Result<UnixListener> UnixListener::Listen(const std::string& path) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgumentError("socket path '" + path + "' must be 1 to " +
                                std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes long");
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return InvalidArgumentError("socket path " + path + " exists and is not a socket (refusing to replace it)");
    }
    if (SomeoneListens(path)) {
      return UnavailableError("another process is listening on " + path + " (hint: stop it, or choose another --socket)");
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("cannot remove the stale socket", path, errno);
  } else if (errno != ENOENT) {
    return Errno("cannot use the socket path", path, errno);
  }
  UnixListener l;
  l.fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l.fd_ < 0) return Errno("cannot create a socket for", path, errno);
  const sockaddr_un a = Address(path);
  // The file is created 0600 (bind applies the umask): no other user may
  // connect, not even for the instant before a chmod.
  const mode_t old_mask = umask(0177);
  const int bound = bind(l.fd_, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0) return Errno("cannot bind the socket", path, bind_errno);
  l.path_ = path;  // from here on the destructor removes the file
  if (stat(path.c_str(), &st) != 0) return Errno("cannot stat the socket", path, errno);
  l.dev_ = st.st_dev;
  l.ino_ = st.st_ino;
  if (listen(l.fd_, SOMAXCONN) != 0) return Errno("cannot listen on", path, errno);
  return l;
}

UnixListener& UnixListener::operator=(UnixListener&& o) noexcept {
  if (this != &o) {
    this->~UnixListener();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    dev_ = o.dev_;
    ino_ = o.ino_;
    o.fd_ = -1;
    o.path_.clear();
  }
  return *this;
}

UnixListener::~UnixListener() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  struct stat st {};
  // Only our own file: another service may have replaced a stale one since.
  if (!path_.empty() && lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    unlink(path_.c_str());
  }
  path_.clear();
}

Status UnixListener::MoveDescriptorTo(int target) {
  if (dup2(fd_, target) < 0) return Errno("cannot take over the listening descriptor for", path_, errno);
  close(fd_);
  fd_ = -1;
  return Status::Ok();
}

}  // namespace attune::service
