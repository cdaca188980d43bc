#!/usr/bin/env bash
# End-to-end test against the cluster KUBECONFIG points at (any conformant cluster: kind, k3d,
# EKS...). It installs the CRDs, runs the operator out of cluster against the embedded
# directory store, applies the examples, waits for every System to be Ready, breaks a Policy
# and checks that the System stalls while its last good bundle keeps serving, fixes it, deletes
# a ConfigMap edict wrote (it comes back), gives a lonely Stack a broken Policy (it stalls),
# checks the chart's roles and admission policy for Systems with impersonated users, and deletes
# everything it created.
#
#   e2e/run.sh            # uses $KUBECONFIG (or ~/.kube/config) and `kubectl` on PATH
#   KEEP=1 e2e/run.sh     # leave the namespaces and CRDs in place afterwards
#
# The operator is target/debug/edict (or $CARGO_TARGET_DIR/debug/edict), built first. Its Lease
# lives in the namespace edict-e2e, which the script creates and deletes. Every wait stops at
# once, with the operator's log, if the operator process has died.
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
lease_namespace=edict-e2e
bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/edict"

# Fails at once, with the end of its log, when the operator process is gone.
operator_alive() {
    if [ -n "$operator_pid" ] && ! kill -0 "$operator_pid" 2>/dev/null; then
        tail -n 50 "$work/operator.log" >&2 || true
        fail "the operator (pid $operator_pid) exited"
    fi
}

# eventually SECONDS COMMAND...: runs COMMAND until it succeeds, at most SECONDS long, checking
# before each try that the operator still runs.
eventually() {
    local deadline=$((SECONDS + $1))
    shift
    while :; do
        operator_alive
        if "$@" >/dev/null 2>&1; then return 0; fi
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}

# wait_for SECONDS KUBECTL-WAIT-ARGS...: `kubectl wait` in 5-second steps.
wait_for() {
    local seconds="$1"
    shift
    eventually "$seconds" "$KUBECTL" wait "$@" --timeout=5s
}

# gone NAMESPACE RESOURCE: no such object (or, for a kind, none of it) is left in NAMESPACE.
gone() {
    [ -z "$("$KUBECTL" -n "$1" get "$2" -o name --ignore-not-found 2>/dev/null)" ]
}

access_installed=""
cleanup() {
    if [ -n "$access_installed" ] && [ -z "${KEEP:-}" ]; then
        # First, so that nothing below is refused by the admission policy.
        "$KUBECTL" delete -f config/admission/admission-policy.yaml -f config/rbac/user-roles.yaml \
            --ignore-not-found >/dev/null 2>&1 || true
    fi
    if [ -z "${KEEP:-}" ]; then
        # While the operator runs, its finalizers come off as it cleans up; if it is gone,
        # take them off so that nothing is left stuck in deletion.
        "$KUBECTL" delete -f examples/acme/ --ignore-not-found --timeout=30s >/dev/null 2>&1 || true
        for s in $("$KUBECTL" get systems -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null); do
            "$KUBECTL" -n "${s%%/*}" patch system "${s#*/}" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        done
        "$KUBECTL" delete namespace "${namespaces[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    if [ -n "$operator_pid" ]; then
        # SIGTERM: the operator releases its Lease and exits; then the Lease goes too.
        kill "$operator_pid" 2>/dev/null || true
        wait "$operator_pid" 2>/dev/null || true
    fi
    if [ -z "${KEEP:-}" ]; then
        "$KUBECTL" -n "$lease_namespace" delete lease edict-leader --ignore-not-found >/dev/null 2>&1 || true
        "$KUBECTL" delete namespace "$lease_namespace" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say "installing the CRDs"
"$KUBECTL" apply --server-side -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null

for ns in "${namespaces[@]}" "$lease_namespace"; do
    "$KUBECTL" create namespace "$ns" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
done

say "building and starting the operator (out of cluster, embedded store in $work/store)"
cargo build --quiet --bin edict
[ -x "$bin" ] || fail "no operator binary at $bin"
EDICT_NAMESPACE="$lease_namespace" EDICT_POD_NAME="e2e-$$" EDICT_CLUSTER=e2e \
    "$bin" run --store "$work/store" --metrics-addr 127.0.0.1:0 --addr 127.0.0.1:0 >"$work/operator.log" 2>&1 &
operator_pid=$!
sleep 1
operator_alive

say "applying the examples"
"$KUBECTL" apply -f examples/acme/ >/dev/null
wait_for 120 --for=condition=Ready systems --all -A ||
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
wait_for 60 -n acme-payments --for=condition=Stalled system/payments-cluster ||
    fail "the System did not stall"
"$KUBECTL" -n acme-platform get policy restrict-proxies -o jsonpath='{.status.conditions[0].message}' | grep -q 'spec.rego:' ||
    fail "the Policy's status does not say where the Rego is wrong"
[ "$(sha256sum "$bundle" | cut -d' ' -f1)" = "$before" ] || fail "the live bundle changed while the Policy was broken"

say "fixing it: recovery without restart"
"$KUBECTL" apply -f examples/acme/stacks.yaml >/dev/null
wait_for 60 -n acme-payments --for=condition=Ready system/payments-cluster || fail "no recovery"

say "a ConfigMap deleted by hand is written again"
"$KUBECTL" -n acme-payments delete configmap payments-cluster-opa-config >/dev/null
eventually 30 "$KUBECTL" -n acme-payments get configmap payments-cluster-opa-config ||
    fail "the ConfigMap did not come back"
"$KUBECTL" -n acme-payments get configmap payments-cluster-opa-config -o jsonpath='{.data.config\.yaml}' |
    grep -q '/var/run/secrets/edict/token' || fail "the OPA configuration does not send reports with the projected token"

say "a Stack that selects no System, with a broken Policy, still gets a status"
printf '%s\n' 'apiVersion: edict.dev/v1alpha1' 'kind: Stack' \
    'metadata: {name: e2e-lonely, namespace: acme-platform}' \
    'spec: {type: kubernetes, selector: {e2e-nothing: ["*"]}}' '---' \
    'apiVersion: edict.dev/v1alpha1' 'kind: Policy' \
    'metadata: {name: e2e-lonely-broken, namespace: acme-platform}' \
    'spec: {target: {kind: Stack, name: e2e-lonely}, rego: "package stacks.e2e_lonely.x\n\ndeny contains msg if {\n  msg :=\n}\n"}' \
    >"$work/lonely.yaml"
"$KUBECTL" apply -f "$work/lonely.yaml" >/dev/null
wait_for 60 -n acme-platform --for=condition=Stalled policy/e2e-lonely-broken ||
    fail "the lonely Stack's broken Policy got no Stalled status"
"$KUBECTL" delete -f "$work/lonely.yaml" --ignore-not-found >/dev/null

# Access control, as the chart installs it (config/ holds the chart's manifests): owners edit
# Systems but neither create, delete nor relabel them; tenant admins do. Checked with
# impersonation (the chart README's commands) and server-side dry runs, which go through RBAC
# and admission and write nothing.
as_owner=(--as=e2e-owner --as-group=system:authenticated)
as_impostor=(--as=e2e-impostor --as-group=system:authenticated)
as_admin=(--as=e2e-tenant-admin --as-group=edict:tenant-admins --as-group=system:authenticated)
# refused REASON COMMAND...: COMMAND fails, and says REASON.
refused() {
    local reason="$1" out
    shift
    if out="$("$@" 2>&1)"; then return 1; fi
    grep -q -- "$reason" <<<"$out" || { say "refused, but not for \"$reason\": $out"; return 1; }
}
if ! "$KUBECTL" api-resources --api-group=admissionregistration.k8s.io -o name 2>/dev/null |
    grep -q '^validatingadmissionpolicies'; then
    say "SKIPPED access control: this cluster has no ValidatingAdmissionPolicy (Kubernetes < 1.30)"
    as_admin=()
elif [ "$("$KUBECTL" auth can-i impersonate users 2>/dev/null)" != yes ]; then
    say "SKIPPED access control: KUBECONFIG's user may not impersonate users"
    as_admin=()
elif "$KUBECTL" get validatingadmissionpolicy edict-system-access >/dev/null 2>&1; then
    say "SKIPPED access control: edict's admission policy is already installed here (the chart?)"
    as_admin=()
else
    say "access control: the chart's roles and admission policy"
    access_installed=1
    "$KUBECTL" apply --server-side -f config/rbac/user-roles.yaml -f config/admission/admission-policy.yaml >/dev/null
    for ns in "${namespaces[@]}"; do
        "$KUBECTL" -n "$ns" create rolebinding e2e-owner --clusterrole=edit --user=e2e-owner \
            --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
        "$KUBECTL" -n "$ns" create rolebinding e2e-impostor --clusterrole=edict-tenant-admin --user=e2e-impostor \
            --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
        "$KUBECTL" -n "$ns" create rolebinding acme-tenant-admins --clusterrole=edict-tenant-admin \
            --group=edict:tenant-admins --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    done
    sys=(-n acme-payments system payments-cluster)
    # RBAC: `edit` (aggregated, once the controller has added edict's rules) edits Systems but
    # neither creates nor deletes them; edict-tenant-admin does.
    eventually 30 "$KUBECTL" auth can-i patch systems -n acme-payments "${as_owner[@]}" ||
        fail "edit does not let an owner patch Systems"
    [ "$("$KUBECTL" auth can-i delete systems -n acme-payments "${as_owner[@]}")" = no ] ||
        fail "edit lets an owner delete Systems"
    [ "$("$KUBECTL" auth can-i create systems -n acme-payments "${as_owner[@]}")" = no ] ||
        fail "edit lets an owner create Systems"
    [ "$("$KUBECTL" auth can-i delete systems -n acme-payments "${as_admin[@]}")" = yes ] ||
        fail "edict-tenant-admin does not let a tenant admin delete Systems"
    # Admission: the policy takes a few seconds to load into the API server.
    eventually 30 refused "may change a System's metadata.labels" \
        "$KUBECTL" label "${sys[@]}" env=dev --overwrite --dry-run=server "${as_owner[@]}" ||
        fail "an owner relabels a System"
    "$KUBECTL" patch "${sys[@]}" --type merge -p '{"spec":{"description":"e2e"}}' --dry-run=server \
        "${as_owner[@]}" >/dev/null || fail "an owner cannot edit a System's description"
    refused "may change a System's spec.features" "$KUBECTL" patch "${sys[@]}" --type merge \
        -p '{"spec":{"features":{"proxies":{"allowed":["nginx"]}}}}' --dry-run=server "${as_owner[@]}" ||
        fail "an owner changes a System's features"
    # The way out that relabelling no longer offers: delete and re-create without labels.
    refused "may delete Systems" "$KUBECTL" delete "${sys[@]}" --dry-run=server "${as_impostor[@]}" ||
        fail "a user who is no tenant admin deletes a System"
    printf '%s\n' 'apiVersion: edict.dev/v1alpha1' 'kind: System' \
        'metadata: {name: e2e-copy, namespace: acme-payments}' 'spec: {type: kubernetes}' >"$work/copy.yaml"
    refused "may create Systems" "$KUBECTL" create -f "$work/copy.yaml" --dry-run=server "${as_impostor[@]}" ||
        fail "a user who is no tenant admin creates a System"
    "$KUBECTL" create -f "$work/copy.yaml" --dry-run=server "${as_admin[@]}" >/dev/null ||
        fail "a tenant admin cannot create a System"
    "$KUBECTL" label "${sys[@]}" env=staging --overwrite --dry-run=server "${as_admin[@]}" >/dev/null ||
        fail "a tenant admin cannot relabel a System"
fi

say "deleting a System removes its bundles and ConfigMap, and nothing of the others"
"$KUBECTL" -n acme-data delete system batch-api --wait=false "${as_admin[@]}" >/dev/null
eventually 60 gone acme-data system/batch-api || fail "the System was not released"
[ ! -e "$work/store/bundles/acme/e2e/acme-data/batch-api/bundle.tar.gz" ] || fail "its bundle is still there"
! "$KUBECTL" -n acme-data get configmap batch-api-opa-config >/dev/null 2>&1 || fail "its ConfigMap is still there"
[ -s "$bundle" ] || fail "another System's bundle went with it"

say "deleting the examples"
"$KUBECTL" delete -f examples/acme/systems.yaml -f examples/acme/stacks.yaml --ignore-not-found --wait=false \
    "${as_admin[@]}" >/dev/null
"$KUBECTL" delete -f examples/acme/tenant.yaml --ignore-not-found --wait=false >/dev/null
for ns in acme-payments acme-shop acme-data; do
    eventually 60 gone "$ns" systems || fail "the Systems of $ns were not released"
done
say "passed"
