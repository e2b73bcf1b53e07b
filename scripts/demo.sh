#!/usr/bin/env bash
# The main job on a fresh machine: install, build, fetch the default model,
# and run the whole personalization loop (attune demo). Extra arguments go to
# `attune demo` (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
BUILD_DIR=${ATTUNE_BUILD_DIR:-build}
"$BUILD_DIR/cli/attune" model fetch
"$BUILD_DIR/cli/attune" demo "$@"
