#!/usr/bin/env bash
# Runs every `curl` example of docs/serve.md, as written (only the port is
# changed), against `attune serve` on the tiny model; fails when one fails or
# answers with an error object.
# Usage: docs_curl_test.sh ATTUNE_BINARY SOURCE_DIR
set -euo pipefail
ATTUNE=$1
SRC=$2
TMP=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
cat > "$TMP/serve.toml" <<TOML
[server]
port = 0
[model]
path = "$SRC/tests/fixtures/models/tiny_llama.gguf"
chat_template = "chatml"
default_max_tokens = 8
[training]
background = false
max_steps = 10
[trainer]
rank = 4
alpha = 8
micro_batch_size = 4
grad_accum_steps = 1
max_seq_len = 64
anchor_examples = 2
anchor_max_tokens = 8
forgetting_prompts = ["hi"]
TOML
mkfifo "$TMP/out"
"$ATTUNE" serve --config "$TMP/serve.toml" --data-dir "$TMP/data" --json > "$TMP/out" 2> "$TMP/err" &
PID=$!
exec 3< "$TMP/out"
read -r LINE <&3
PORT=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["port"])' "$LINE")

# The ```sh blocks, commands joined across trailing backslashes; the setup
# lines (model fetch, serve, systemctl, cp) are not requests.
python3 - "$SRC/docs/serve.md" > "$TMP/commands" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"```sh\n(.*?)```", text, re.S):
    cmd = ""
    for line in block.splitlines():
        cmd += line.rstrip("\\") + ("\n" if line.endswith("\\") else "")
        if line.endswith("\\") or line.rstrip().endswith("|"):
            continue
        if "127.0.0.1:8080" in cmd and cmd.lstrip().startswith(("curl ", "ID=")):
            print(cmd.replace("\n", " ").strip() + "\0", end="")
        cmd = ""
PY
n=0
while IFS= read -r -d '' cmd; do
  cmd=${cmd//127.0.0.1:8080/127.0.0.1:$PORT}
  # In this shell, so that ID=$(...) is seen by the next example.
  eval "$cmd" > "$TMP/response" || { echo "docs_curl_test: FAILED (exit $?): $cmd" >&2; exit 1; }
  out=$(cat "$TMP/response")
  if [[ "$out" == *'"error":'* ]]; then
    echo "docs_curl_test: FAILED: $cmd" >&2
    echo "$out" >&2
    exit 1
  fi
  n=$((n + 1))
done < "$TMP/commands"
echo "docs_curl_test: $n examples ran"
[ "$n" -ge 12 ]
kill -TERM $PID
wait $PID
