#include "attune/core/file.h"

#include "attune/core/env.h"
#include "posix_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

namespace attune {

namespace internal {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " '" + path + "': " + std::strerror(err);
  if (err == ENOENT) return NotFoundError(msg);
  return IoError(msg);
}

Result<int> OpenRegularFile(const std::string& path, size_t* size) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (refused below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot stat", path, err);
  }
  if (Status regular = RequireRegularFile(path, st.st_mode); !regular.ok()) {
    ::close(fd);
    return regular;
  }
  *size = static_cast<size_t>(st.st_size);
  return fd;
}

}  // namespace internal

namespace {

using internal::ErrnoStatus;

std::string DirName(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

}  // namespace

Result<std::string> ReadFile(const std::string& path) { return Env::Default()->ReadFile(path); }

Status SyncDir(const std::string& dir) { return Env::Default()->SyncDir(dir); }

Status RenameDurable(const std::string& from, const std::string& to) {
  Env* env = Env::Default();
  RETURN_IF_ERROR(env->RenameFile(from, to));
  return env->SyncDir(DirName(to));
}

Status WriteFileAtomic(const std::string& path, std::string_view contents) {
  // A device, FIFO or socket at `path` (or behind a symlink there) is not
  // replaced by a file: the caller asked to write to something that is not one.
  if (struct stat st; ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return RequireRegularFile(path, st.st_mode).WithContext("not replaced");
  }
  Env* env = Env::Default();
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env->NewWritableFile(tmp));
  Status st = f->Append(contents);
  if (st.ok()) st = f->Sync();
  Status closed = f->Close();
  if (st.ok()) st = closed;
  if (st.ok()) st = RenameDurable(tmp, path);
  if (!st.ok()) env->RemoveFile(tmp).IgnoreError();  // best effort; Gc-style cleanups find leftovers
  return st;
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IoError("cannot create directory '" + dir + "': " + ec.message());
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status RequireRegularFile(const std::string& path, unsigned mode) {
  if (S_ISREG(mode)) return Status::Ok();
  const char* what = S_ISDIR(mode)    ? "a directory"
                     : S_ISFIFO(mode) ? "a FIFO"
                     : S_ISCHR(mode)  ? "a character device"
                     : S_ISBLK(mode)  ? "a block device"
                     : S_ISSOCK(mode) ? "a socket"
                                      : "not a regular file";
  return InvalidArgumentError("'" + path + "' is " + what + ", expected a file");
}

Result<MappedFile> MappedFile::Open(const std::string& path) {
  size_t size = 0;
  ASSIGN_OR_RETURN(int fd, internal::OpenRegularFile(path, &size));
  MappedFile mf;
  mf.path_ = path;
  mf.size_ = size;
  if (mf.size_ > 0) {
    void* p = ::mmap(nullptr, mf.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot mmap", path, err);
    }
    mf.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return mf;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(o.data_), size_(o.size_), path_(std::move(o.path_)) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = o.data_;
    size_ = o.size_;
    path_ = std::move(o.path_);
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string ResolveDataDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("ATTUNE_HOME"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/attune";
}

}  // namespace attune
