#include "tests/core/fault_env.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "attune/core/file.h"

namespace attune::testing {
namespace {

std::string DirOf(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? "." : pos == 0 ? "/" : path.substr(0, pos);
}

class FaultFile : public WritableFile {
 public:
  FaultFile(FaultInjectionEnv* env, std::unique_ptr<WritableFile> base, std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}
  Status Append(std::string_view data) override {
    RETURN_IF_ERROR(env_->MaybeFail("write", path_));
    RETURN_IF_ERROR(base_->Append(data));
    size_ += data.size();
    return Status::Ok();
  }
  Status Sync() override {
    RETURN_IF_ERROR(env_->MaybeFail("cannot fsync", path_));
    RETURN_IF_ERROR(base_->Sync());
    env_->NoteSynced(path_, size_);
    return Status::Ok();
  }
  Status Close() override {
    if (closed_) return Status::Ok();
    closed_ = true;
    Status injected = env_->MaybeFail("cannot close", path_);
    Status st = base_->Close();
    return injected.ok() ? st : injected;
  }

 private:
  FaultInjectionEnv* env_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
  uint64_t size_ = 0;
  bool closed_ = false;
};

}  // namespace

void FaultInjectionEnv::FailAfter(int ok_ops, int err) {
  std::lock_guard<std::mutex> l(mu_);
  fail_at_ = ops_ + ok_ops;
  err_ = err;
  injected_ = false;
}

void FaultInjectionEnv::ClearFaults() {
  std::lock_guard<std::mutex> l(mu_);
  fail_at_ = -1;
}

int FaultInjectionEnv::ops() const {
  std::lock_guard<std::mutex> l(mu_);
  return ops_;
}

void FaultInjectionEnv::ResetCounter() {
  std::lock_guard<std::mutex> l(mu_);
  ops_ = 0;
}

bool FaultInjectionEnv::injected() const {
  std::lock_guard<std::mutex> l(mu_);
  return injected_;
}

Status FaultInjectionEnv::MaybeFail(const std::string& what, const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  const int op = ops_++;
  if (fail_at_ < 0 || op < fail_at_) return Status::Ok();
  injected_ = true;
  return IoError(what + " '" + path + "': " + std::strerror(err_));
}

void FaultInjectionEnv::NoteSynced(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> l(mu_);
  synced_size_[path] = size;
}

void FaultInjectionEnv::SetReadHook(std::function<void(const std::string&)> hook) {
  std::lock_guard<std::mutex> l(mu_);
  read_hook_ = std::move(hook);
}

Result<std::string> FaultInjectionEnv::ReadFile(const std::string& path) {
  std::function<void(const std::string&)> hook;
  {
    std::lock_guard<std::mutex> l(mu_);
    hook = read_hook_;
  }
  if (hook) hook(path);
  return Env::Posix()->ReadFile(path);
}

Result<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail("cannot create", path));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, Env::Posix()->NewWritableFile(path));
  {
    std::lock_guard<std::mutex> l(mu_);
    synced_size_[path] = 0;
    pending_.push_back({DirOf(path), path, std::nullopt});
  }
  return std::unique_ptr<WritableFile>(new FaultFile(this, std::move(f), path));
}

Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  RETURN_IF_ERROR(MaybeFail("cannot rename '" + from + "' to", to));
  std::optional<std::string> previous;
  if (auto old = Env::Posix()->ReadFile(to); old.ok()) previous = std::move(*old);
  RETURN_IF_ERROR(Env::Posix()->RenameFile(from, to));
  std::lock_guard<std::mutex> l(mu_);
  auto it = synced_size_.find(from);
  if (it != synced_size_.end()) {
    synced_size_[to] = it->second;
    synced_size_.erase(it);
  }
  pending_.push_back({DirOf(to), to, std::move(previous)});
  return Status::Ok();
}

Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  RETURN_IF_ERROR(MaybeFail("cannot fsync directory", dir));
  RETURN_IF_ERROR(Env::Posix()->SyncDir(dir));
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Pending> keep;
  for (auto& p : pending_) {
    if (p.dir != dir) keep.push_back(std::move(p));
  }
  pending_ = std::move(keep);
  return Status::Ok();
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail("cannot remove", path));
  return Env::Posix()->RemoveFile(path);
}

void FaultInjectionEnv::DropUnsyncedData() {
  std::lock_guard<std::mutex> l(mu_);
  namespace fs = std::filesystem;
  std::error_code ec;
  // Unsynced contents first, then the names, newest first.
  for (const auto& [path, size] : synced_size_) {
    if (fs::exists(path, ec) && fs::file_size(path, ec) > size) fs::resize_file(path, size, ec);
  }
  for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
    if (it->previous) {
      std::ofstream(it->path, std::ios::binary | std::ios::trunc) << *it->previous;
    } else {
      fs::remove(it->path, ec);
    }
  }
  pending_.clear();
  synced_size_.clear();
}

}  // namespace attune::testing
