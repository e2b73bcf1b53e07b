#!/usr/bin/env bash
# Drives `attune serve` with the official `openai` Python package, installed
# into a virtual environment under the build folder. A missing package that
# cannot be installed is a failure, not a skip.
# Usage: openai_client_test.sh ATTUNE_BINARY FIXTURES_DIR VENV_DIR
set -euo pipefail
ATTUNE=$1
FIXTURES=$2
VENV=$3
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check openai; then
    echo "openai_client_test: FAILED: could not pip install openai into $VENV" >&2
    exit 1
  fi
fi
exec "$VENV/bin/python" "$(dirname "$0")/openai_client_test.py" "$ATTUNE" "$FIXTURES"
