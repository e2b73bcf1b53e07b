#!/usr/bin/env bash
# `attune demo --quick` on the default model: the loop must learn, swap,
# reject or roll back the poisoned version, and write its report.
set -euo pipefail
ATTUNE=$1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
CACHE=${ATTUNE_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attune}
MODEL=${ATTUNE_TEST_MODEL:-$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=$("$ATTUNE" demo --quick --json --data-dir "$DIR" --model "$MODEL" 2>"$DIR/stderr" | tail -n 1) || {
  cat "$DIR/stderr" >&2
  exit 1
}
echo "$OUT"
fail=0
check() { grep -q "$1" <<<"$OUT" || { echo "FAILED: expected $1" >&2; fail=1; }; }
check '"promoted":true'
check '"poisoned_promoted_by_gate":false'
check '"versions_seen_while_chatting":\["base"'
check '"replies_while_chatting":[1-9]'
[ -f "$DIR/demo/report.html" ] || { echo "FAILED: no report" >&2; fail=1; }
# The rollback returns to the good version.
good=$(sed -E 's/.*"good_version":"([^"]*)".*/\1/' <<<"$OUT")
back=$(sed -E 's/.*"rolled_back_to":"([^"]*)".*/\1/' <<<"$OUT")
[ "$good" = "$back" ] || { echo "FAILED: rolled back to $back, expected $good" >&2; fail=1; }
# Recall must rise.
before=$(sed -E 's/.*"fact_recall_before":([0-9.]+).*/\1/' <<<"$OUT")
after=$(sed -E 's/.*"fact_recall_after":([0-9.]+).*/\1/' <<<"$OUT")
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > b) }' || { echo "FAILED: recall $before -> $after" >&2; fail=1; }
exit $fail
