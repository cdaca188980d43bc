#!/usr/bin/env bash
# End-to-end test against the cluster KUBECONFIG points at (any conformant cluster: kind, k3d,
# EKS...). It installs the CRDs, runs the operator out of cluster against the embedded
# directory store, applies the examples, waits for every System to be Ready, breaks a Policy
# and checks that the System stalls while its last good bundle keeps serving, fixes it, and
# deletes everything it created.
#
#   e2e/run.sh            # uses $KUBECONFIG (or ~/.kube/config) and `kubectl` on PATH
#   KEEP=1 e2e/run.sh     # leave the namespaces and CRDs in place afterwards
#
# Exits 2, saying so, when no cluster is reachable: nothing was tested then.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KUBECTL="${KUBECTL:-kubectl}"
say() { printf 'e2e: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if ! "$KUBECTL" version --request-timeout=5s >/dev/null 2>&1; then
    say "no Kubernetes cluster is reachable through KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}; nothing was tested"
    exit 2
fi
say "cluster: $("$KUBECTL" config current-context 2>/dev/null || echo unknown)"

work="$(mktemp -d)"
operator_pid=""
namespaces=(acme-platform acme-payments acme-shop acme-data)
cleanup() {
    if [ -z "${KEEP:-}" ]; then
        # While the operator runs, its finalizers come off as it cleans up; if it is gone,
        # take them off so that nothing is left stuck in deletion.
        "$KUBECTL" delete -f examples/acme/ --ignore-not-found --timeout=30s >/dev/null 2>&1 || true
        for s in $("$KUBECTL" get systems -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null); do
            "$KUBECTL" -n "${s%%/*}" patch system "${s#*/}" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        done
        "$KUBECTL" delete namespace "${namespaces[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    if [ -n "$operator_pid" ]; then kill "$operator_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

say "installing the CRDs"
"$KUBECTL" apply --server-side -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null

for ns in "${namespaces[@]}"; do
    "$KUBECTL" create namespace "$ns" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
done

say "building and starting the operator (out of cluster, embedded store in $work/store)"
cargo build --quiet
EDICT_NAMESPACE=default EDICT_POD_NAME="e2e-$$" EDICT_CLUSTER=e2e \
    target/debug/edict run --store "$work/store" --metrics-addr 127.0.0.1:0 --addr 127.0.0.1:0 >"$work/operator.log" 2>&1 &
operator_pid=$!

say "applying the examples"
"$KUBECTL" apply -f examples/acme/ >/dev/null
"$KUBECTL" wait --for=condition=Ready systems --all -A --timeout=120s ||
    { tail -n 50 "$work/operator.log" >&2; fail "Systems did not become Ready"; }
bundle="$work/store/bundles/acme/e2e/acme-payments/payments-cluster/bundle.tar.gz"
[ -s "$bundle" ] || fail "no bundle at $bundle"
"$KUBECTL" get edict -A

say "each System has edict's finalizer and a ConfigMap with its OPA configuration"
"$KUBECTL" -n acme-payments get system payments-cluster -o jsonpath='{.metadata.finalizers}' | grep -q 'edict.dev/cleanup' ||
    fail "no finalizer on the System"
"$KUBECTL" -n acme-payments get configmap payments-cluster-opa-config -o jsonpath='{.data.config\.yaml}' |
    grep -q 'bundles/acme/e2e/acme-payments/payments-cluster/bundle.tar.gz' || fail "no OPA configuration ConfigMap"

say "breaking a Policy: the System stalls, its last good bundle stays"
before="$(sha256sum "$bundle" | cut -d' ' -f1)"
"$KUBECTL" -n acme-platform patch policy restrict-proxies --type merge \
    -p '{"spec":{"rego":"package stacks.kubernetes_baseline.proxies\n\ndeny contains msg if {\n  msg :=\n}\n"}}' >/dev/null
"$KUBECTL" -n acme-payments wait --for=condition=Stalled system/payments-cluster --timeout=60s ||
    fail "the System did not stall"
"$KUBECTL" -n acme-platform get policy restrict-proxies -o jsonpath='{.status.conditions[0].message}' | grep -q 'spec.rego:' ||
    fail "the Policy's status does not say where the Rego is wrong"
[ "$(sha256sum "$bundle" | cut -d' ' -f1)" = "$before" ] || fail "the live bundle changed while the Policy was broken"

say "fixing it: recovery without restart"
"$KUBECTL" apply -f examples/acme/stacks.yaml >/dev/null
"$KUBECTL" -n acme-payments wait --for=condition=Ready system/payments-cluster --timeout=60s || fail "no recovery"

say "deleting a System removes its bundles and ConfigMap, and nothing of the others"
"$KUBECTL" -n acme-data delete system batch-api --wait=true --timeout=60s >/dev/null || fail "the System was not released"
[ ! -e "$work/store/bundles/acme/e2e/acme-data/batch-api/bundle.tar.gz" ] || fail "its bundle is still there"
! "$KUBECTL" -n acme-data get configmap batch-api-opa-config >/dev/null 2>&1 || fail "its ConfigMap is still there"
[ -s "$bundle" ] || fail "another System's bundle went with it"

say "deleting the examples"
"$KUBECTL" delete -f examples/acme/ --wait=true --timeout=60s >/dev/null
say "passed"
