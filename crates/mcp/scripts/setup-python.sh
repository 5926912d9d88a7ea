#!/usr/bin/env bash
# Creates crates/mcp/.cache/venv with the Python `mcp` SDK (needs Python >= 3.10) for the tests.
# Prints the interpreter path on success. Honours $TOOLPLANE_PYTHON when that interpreter already has `mcp`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.cache/venv"
if [ -n "${TOOLPLANE_PYTHON:-}" ] && "$TOOLPLANE_PYTHON" -c 'import mcp.server.mcpserver' 2>/dev/null; then
  echo "$TOOLPLANE_PYTHON"; exit 0
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mcp.server.mcpserver' 2>/dev/null; then
  echo "$venv/bin/python"; exit 0
fi
mkdir -p "$here/.cache"
base=""
for candidate in python3.13 python3.12 python3.11 python3.10 python3 \
  /root/.pyenv/versions/3.12.1/bin/python3 /root/.pyenv/versions/3.13.0/bin/python3 /root/.pyenv/versions/3.11.7/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    base="$candidate"; break
  fi
done
if [ -z "$base" ]; then echo "no Python >= 3.10 found" >&2; exit 1; fi
rm -rf "$venv"
"$base" -m venv "$venv" >&2
"$venv/bin/pip" install -q mcp >&2
"$venv/bin/python" -c 'import mcp.server.mcpserver'
echo "$venv/bin/python"
