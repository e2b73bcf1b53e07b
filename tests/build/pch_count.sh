#!/bin/sh
# A full disk once stopped a clean build: each LibTorch target had its own
# precompiled ATen header (about 250 MB each, 25 of them, 6 GB). They share
# three, one per family of flags (cmake/torch.cmake). Usage: pch_count.sh BUILD_DIR
set -eu
n=$(find "$1" -name 'cmake_pch.hxx.gch' | wc -l)
echo "$n precompiled headers in $1"
if [ "$n" -gt 3 ]; then
  find "$1" -name 'cmake_pch.hxx.gch' >&2
  echo "more than three precompiled headers: a target no longer shares one (attune_torch_pch)" >&2
  exit 1
fi
