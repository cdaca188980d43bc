#!/usr/bin/env bash
# The whole test suite: installs what the tests need (pinned, cached under .cache/),
# then format check, clippy, and every test (unit, integration, OPA conformance).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/setup.sh
export EDICT_PYTHON="$root/.cache/venv/bin/python"

echo "== OPA bundle checker self-test"
"$EDICT_PYTHON" scripts/test_opa_bundle.py
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked
