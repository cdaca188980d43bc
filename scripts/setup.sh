#!/usr/bin/env bash
# Installs what the test suite needs into <repo>/.cache/venv (git-ignored).
#
#   scripts/setup.sh            # install, or do nothing if already up to date
#   EDICT_SETUP_FORCE=1 scripts/setup.sh   # reinstall even if the stamp matches
#   PYTHON=python3.12 scripts/setup.sh     # use another interpreter (>= 3.10)
#
# Idempotent: a stamp keyed by a hash of this script, requirements-test.txt
# and the interpreter's version makes a repeat run a no-op. The stamp is
# written only after everything installed and was checked, so a run that
# failed halfway is repaired by the next one.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/venv"
REQS="$SCRIPT_DIR/requirements-test.txt"
STAMP="$VENV/.edict-setup-stamp"
PYTHON="${PYTHON:-python3}"

# The OPA engine: Go's OPA v1.20.2 embedded in a shared library. Its wheel
# claims Requires-Python >=3.14 but works on 3.10+ (it only uses ctypes).
OPA_BINDINGS="opa-golib-python-bindings==0.4.4"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "setup: ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found (set PYTHON=...)"
[ -f "$REQS" ] || die "missing $REQS"

# Stamp key: this script + the requirements + the interpreter version.
py_version="$("$PYTHON" -c 'import sys; print(sys.version.split()[0]); sys.exit(sys.version_info < (3, 10))')" \
    || die "$PYTHON is too old: need Python >= 3.10 (have ${py_version:-unknown})"
key="$( { cat "${BASH_SOURCE[0]}" "$REQS"; printf 'python=%s\n' "$py_version"; } | sha256sum | cut -d' ' -f1)"

# Fast path: stamp matches and the venv still holds the OPA engine.
have_engine() { compgen -G "$VENV/lib/python*/site-packages/opa_bindings/libopabridge.so" >/dev/null; }
if [ -z "${EDICT_SETUP_FORCE:-}" ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] \
        && [ "$(cat "$STAMP")" = "$key" ] && have_engine; then
    say "up to date ($VENV)"
    exit 0
fi

mkdir -p "$CACHE"
# One installer at a time (parallel CI steps share the cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.setup.lock"
    flock 9
fi

start=$SECONDS
rm -f "$STAMP"

# A venv whose interpreter or pip no longer works (moved repo, removed
# Python, half-deleted) is rebuilt.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    say "existing venv is broken, recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv with $PYTHON $py_version at $VENV"
    "$PYTHON" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
fi

pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)

say "installing $OPA_BINDINGS (--no-deps --ignore-requires-python)"
"${pip[@]}" install -q --force-reinstall --no-deps --ignore-requires-python "$OPA_BINDINGS" \
    || die "could not install $OPA_BINDINGS"

if grep -qEv '^[[:space:]]*(#|$)' "$REQS"; then
    say "installing ${REQS#"$ROOT"/}"
    "${pip[@]}" install -q -r "$REQS" || die "could not install the packages in $REQS"
fi

say "checking the OPA engine"
"$VENV/bin/python" - <<'EOF' || die "the OPA binding does not work in $VENV"
from opa_bindings import OpaEngine
with OpaEngine() as e:
    e.add_policy("check.rego", "package check\nok if input.x == 1\n")
    assert e.eval_document("check.ok", {"x": 1}) is True
EOF

printf '%s\n' "$key" > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
say "done in $((SECONDS - start))s ($VENV)"
