#!/usr/bin/env bash
# The lever table of docs/trainer.md: persona_bench on one persona under each
# setting below (each flag spelled out: persona_bench's own defaults are the
# chosen setting), then, with CHOSEN="flags", that setting on the personas it
# was not tuned on. One JSON line per run on stdout.
# Usage: bench/trainer/levers.sh BUILD_DIR MODEL [TUNE_PERSONA] [OTHER_PERSONAS...]
set -euo pipefail
BUILD=${1:?build dir}
MODEL=${2:?model file}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TUNE=${3:-$SRC/examples/personas/sam.json}
shift 3 2>/dev/null || shift $#
OTHERS=("$@")
[ ${#OTHERS[@]} -gt 0 ] || OTHERS=("$SRC/examples/personas/ines.json" "$SRC/examples/personas/kofi.json")
BENCH="$BUILD/bench/trainer/persona_bench"
run() {  # label, flags...
  local label=$1
  shift
  for p in "${PERSONAS[@]}"; do
    echo "levers: $label on $(basename "$p")" >&2
    "$BENCH" --model "$MODEL" --json "$@" "$p" | sed "s/^{/{\"setting\":\"$label\",/"
  done
}
PERSONAS=("$TUNE")
if [ -n "${LEVERS:-}" ]; then
  # LEVERS="label:flags;label:flags" runs only those settings.
  IFS=';' read -ra SETTINGS <<<"$LEVERS"
else
  SETTINGS=(
    "baseline (16 first anchors):--anchors 16 --anchor-selection first"
    "nearest anchors:--anchors 16 --anchor-selection nearest"
    "nearest, 32 anchors:--anchors 32 --anchor-selection nearest"
    "nearest, anchor weight 3:--anchors 16 --anchor-selection nearest --anchor-weight 3"
    "lr 1e-3:--anchors 16 --anchor-selection first --lr 1e-3"
    "rank 8:--anchors 16 --anchor-selection first --rank 8 --alpha 16"
    "attention only:--anchors 16 --anchor-selection first --targets q,k,v,o"
  )
fi
for s in "${SETTINGS[@]}"; do
  # shellcheck disable=SC2086
  run "${s%%:*}" ${s#*:}
done
if [ -n "${CHOSEN:-}" ]; then
  PERSONAS=("$TUNE" "${OTHERS[@]}")
  # shellcheck disable=SC2086
  run "chosen" $CHOSEN
fi
