#!/usr/bin/env bash
# Installs what the test suite needs, then runs all of it: formatting, clippy, and every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --no-lint  # tests only
#
# Needs: a Rust toolchain (cargo-nextest is used when present), python3. Installs into .cache/: a Python venv with
# pycryptodome (Dify-format crypto oracles) and moto[server] (S3). Uses PostgreSQL on 127.0.0.1:5432 when it runs
# or can be started; otherwise the PostgreSQL tests print a skip notice.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lint=1
[ "${1:-}" = "--no-lint" ] && lint=0

step() { printf '\n==> %s\n' "$*"; }

# --- Python tools for the tests -------------------------------------------------------------------
step "Python test dependencies"
venv="$root/.cache/venv"
base_python=${TOOLPLANE_BASE_PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$base_python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import Crypto, moto.server, boto3' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'pycryptodome>=3.20' 'moto[server]>=5' \
    || echo "warning: could not install pycryptodome/moto; the tests that need them will print skip notices"
fi
export TOOLPLANE_PYTHON="$venv/bin/python" PYTHON="$venv/bin/python"

# --- PostgreSQL -------------------------------------------------------------------------------------
step "PostgreSQL"
pg_url=${TOOLPLANE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_ready && command -v pg_ctlcluster >/dev/null; then
  cluster=$(ls /etc/postgresql 2>/dev/null | head -n1 || true)
  [ -n "$cluster" ] && pg_ctlcluster --skip-systemctl-redirect "$cluster" main start 2>/dev/null || true
  for _ in $(seq 1 20); do pg_ready && break; sleep 0.5; done
fi
if pg_ready; then
  # The tests connect as postgres to database "test"; create it when missing.
  if command -v psql >/dev/null && ! psql "$pg_url" -qAtc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -qc 'create database test' >/dev/null 2>&1 || true
  fi
  export TOOLPLANE_TEST_POSTGRES_URL="$pg_url"
  echo "using $pg_url"
else
  unset TOOLPLANE_TEST_POSTGRES_URL
  echo "PostgreSQL is not running on 127.0.0.1:5432: its tests will be skipped"
fi

# --- Lint -------------------------------------------------------------------------------------------
if [ "$lint" = 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

# --- Tests ------------------------------------------------------------------------------------------
step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi
