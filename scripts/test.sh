#!/usr/bin/env bash
# The whole test suite: installs what the tests need (pinned, cached under .cache/),
# then format check, clippy, and every test (unit, integration, OPA conformance).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/setup.sh
export EDICT_PYTHON="$root/.cache/venv/bin/python"
# As the edict binary does for itself (see main.rs): with RUST_BACKTRACE set, every parse of
# Rego in the test binaries would capture stack traces for regorus's internal errors.
export RUST_LIB_BACKTRACE="${RUST_LIB_BACKTRACE:-0}"

# The AWS wire-protocol servers the storage tests talk to (moto: S3, DynamoDB, KMS, STS, IAM;
# SeaweedFS: a real S3-compatible store), on loopback, stopped whatever happens.
trap 'scripts/servers.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(scripts/servers.sh start)"
echo "== test servers: moto at $EDICT_MOTO_ENDPOINT, SeaweedFS at $EDICT_SEAWEED_ENDPOINT"
"$EDICT_PYTHON" scripts/test_servers.py

echo "== OPA bundle checker self-test"
"$EDICT_PYTHON" scripts/test_opa_bundle.py
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
log="$(mktemp)"
cargo test --locked 2>&1 | tee "$log"
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
