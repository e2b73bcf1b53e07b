#!/usr/bin/env bash
# The main job on a fresh machine: install, build, fetch the default model,
# and answer a prompt with it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
BUILD_DIR=${ATTUNE_BUILD_DIR:-build}
"$BUILD_DIR/cli/attune" model fetch
"$BUILD_DIR/cli/attune" generate "${1:-What is the capital of France?}"
