#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, build, fetch the default
# model (the golden and real-model tests use it), run every test, then the
# GGUF, feedback JSON, registry and export mutation tests, the parser fuzz
# tests, the replay store's damage tests, the quantized kernels and the
# LibTorch-free engine (with damaged model files) under
# AddressSanitizer and UBSan, and the
# snapshot/registry concurrency tests under ThreadSanitizer (small torch-free
# builds).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
BUILD_DIR=${ATTUNE_BUILD_DIR:-build}
"$BUILD_DIR/cli/attune" model fetch
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 900)

ASAN_DIR=${ATTUNE_ASAN_BUILD_DIR:-build-asan}
if [ ! -f "$ASAN_DIR/build.ninja" ]; then
  cmake -S . -B "$ASAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DATTUNE_WITH_TORCH=OFF -DATTUNE_ASAN=ON -DATTUNE_BUILD_BENCH=OFF
fi
ninja -C "$ASAN_DIR" formats_test feedback_test adapters_test export_mutation_test kernels_test replay_test lean_engine_test
ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} \
  "$ASAN_DIR/tests/runtime/formats_test" --gtest_filter='GgufTest.*:PreTokenizerTest.*'
# Hostile feedback JSON and damaged registry files (STATE, payloads).
ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} \
  "$ASAN_DIR/tests/feedback/feedback_test" --gtest_filter='JsonFuzzTest.*:JsonLimitsTest.*'
ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} \
  "$ASAN_DIR/tests/adapters/adapters_test" --gtest_filter='RegistryDamageTest.*:Payload.*'
# The replay store's damage and repair tests and its corruption matrix (our
# code instrumented; RocksDB below it is Debian's build).
"$ASAN_DIR/tests/replay/replay_test" --gtest_filter='DamageTest.*:RepairTest.*:CorruptionMatrixTest.*'
# The PEFT, GGUF-LoRA and bundle readers under the same mutations.
ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} "$ASAN_DIR/tests/export/export_mutation_test"
# Quantized kernels on odd shapes, every instruction set of this CPU and the scalar path.
"$ASAN_DIR/tests/runtime/kernels_test"
# The LibTorch-free engine end to end (load, prefill, decode, adapters), and
# damaged model files loaded and run.
ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} "$ASAN_DIR/tests/runtime/lean_engine_test"
# Every torch-free parser of outside input, mutated, under ASan and UBSan.
ninja -C "$ASAN_DIR" formats_fuzz_test feedback_fuzz_test adapters_fuzz_test adapters_fault_test
for t in runtime/formats_fuzz_test feedback/feedback_fuzz_test adapters/adapters_fuzz_test adapters/adapters_fault_test; do
  ATTUNE_FUZZ_ITERATIONS=${ATTUNE_FUZZ_ITERATIONS:-4000} "$ASAN_DIR/tests/$t"
done

# The snapshot publish/pin logic and the registry under ThreadSanitizer
# (plain buffers; LibTorch is not instrumented).
TSAN_DIR=${ATTUNE_TSAN_BUILD_DIR:-build-tsan}
if [ ! -f "$TSAN_DIR/build.ninja" ]; then
  cmake -S tests/adapters/tsan -B "$TSAN_DIR" -G Ninja
fi
ninja -C "$TSAN_DIR"
ctest --test-dir "$TSAN_DIR" --output-on-failure
